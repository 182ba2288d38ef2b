//! Per-sequence key/value caches, and frozen prompt prefixes that many sequences share.
//!
//! Keys and values are host f32, one growable buffer per layer laid out `[position][kv_head]
//! [head_dim]` (RoPE already applied to keys). A cache may start with a [`SharedPrefix`]: an
//! `Arc`'d chain of frozen segments that the attention reads in place, so a shared system
//! prompt costs its memory once however many sequences continue it.

use std::sync::Arc;

/// Keys and values of one layer for a run of positions.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    pub(crate) keys: Vec<f32>,
    pub(crate) values: Vec<f32>,
}

/// The cache of one sequence: an optional shared prefix plus its own keys and values.
#[derive(Debug)]
pub struct KvCache {
    prefix: Option<SharedPrefix>,
    layers: Vec<LayerKv>,
    kv_width: usize,
    own_len: usize,
}

/// A frozen cache that any number of sequences can start from without copying it.
#[derive(Debug, Clone)]
pub struct SharedPrefix(Arc<PrefixSegment>);

#[derive(Debug)]
struct PrefixSegment {
    parent: Option<SharedPrefix>,
    layers: Vec<LayerKv>,
    kv_width: usize,
    /// Positions in this segment and its ancestors.
    len: usize,
}

impl KvCache {
    pub(crate) fn new(layers: usize, kv_width: usize) -> Self {
        KvCache {
            prefix: None,
            layers: vec![LayerKv::default(); layers],
            kv_width,
            own_len: 0,
        }
    }

    /// Tokens in the cache, prefix included.
    pub fn len(&self) -> usize {
        self.prefix_len() + self.own_len
    }

    /// Whether the cache holds no token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens in the shared prefix this cache starts with.
    pub fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, SharedPrefix::len)
    }

    /// Turns a computed prompt prefix into a shareable one (no copy of the data).
    pub fn freeze(self) -> SharedPrefix {
        match self.prefix {
            Some(prefix) if self.own_len == 0 => prefix,
            prefix => {
                let len = prefix.as_ref().map_or(0, SharedPrefix::len) + self.own_len;
                SharedPrefix(Arc::new(PrefixSegment {
                    parent: prefix,
                    layers: self.layers,
                    kv_width: self.kv_width,
                    len,
                }))
            }
        }
    }

    /// Bytes of key/value data this cache owns (its shared prefix not counted).
    pub fn own_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.keys.capacity() + l.values.capacity()) * std::mem::size_of::<f32>())
            .sum()
    }

    pub(crate) fn own_len(&self) -> usize {
        self.own_len
    }

    pub(crate) fn fits(&self, layers: usize, kv_width: usize) -> bool {
        self.layers.len() == layers && self.kv_width == kv_width
    }

    /// Appends keys and values of new positions to one layer (not yet counted by `len`).
    pub(crate) fn append(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        let l = &mut self.layers[layer];
        l.keys.extend_from_slice(keys);
        l.values.extend_from_slice(values);
    }

    /// Counts `n` appended positions as part of the cache.
    pub(crate) fn commit(&mut self, n: usize) {
        self.own_len += n;
    }

    /// Drops own positions beyond `len` (undoes a failed forward pass).
    pub(crate) fn truncate_own(&mut self, len: usize) {
        let keep = len * self.kv_width;
        for l in &mut self.layers {
            l.keys.truncate(keep);
            l.values.truncate(keep);
        }
        self.own_len = len.min(self.own_len);
    }

    /// The segments of one layer in position order: the prefix chain, root first, then the
    /// cache's own data (which may include positions appended but not yet committed).
    pub(crate) fn segments(&self, layer: usize) -> Vec<&LayerKv> {
        let mut segs = Vec::new();
        let mut node = self.prefix.as_ref();
        while let Some(p) = node {
            segs.push(&p.0.layers[layer]);
            node = p.0.parent.as_ref();
        }
        segs.reverse();
        segs.push(&self.layers[layer]);
        segs
    }
}

impl SharedPrefix {
    /// Tokens in the prefix.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the prefix holds no token.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// A new cache that starts with this prefix (no copy of the prefix data).
    pub fn cache(&self) -> KvCache {
        KvCache {
            prefix: Some(self.clone()),
            layers: vec![LayerKv::default(); self.0.layers.len()],
            kv_width: self.0.kv_width,
            own_len: 0,
        }
    }

    /// Bytes of key/value data in the whole prefix chain.
    pub fn bytes(&self) -> usize {
        let own: usize = self
            .0
            .layers
            .iter()
            .map(|l| (l.keys.len() + l.values.len()) * std::mem::size_of::<f32>())
            .sum();
        own + self.0.parent.as_ref().map_or(0, SharedPrefix::bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_chains_segments_without_copying() {
        let mut c = KvCache::new(2, 3);
        c.append(0, &[1.0; 6], &[2.0; 6]);
        c.append(1, &[1.0; 6], &[2.0; 6]);
        c.commit(2);
        let p1 = c.freeze();
        assert_eq!(p1.len(), 2);
        let mut c2 = p1.cache();
        assert_eq!((c2.len(), c2.prefix_len(), c2.own_len()), (2, 2, 0));
        c2.append(0, &[3.0; 3], &[4.0; 3]);
        c2.append(1, &[3.0; 3], &[4.0; 3]);
        c2.commit(1);
        let p2 = c2.freeze();
        assert_eq!(p2.len(), 3);
        let c3 = p2.cache();
        let segs = c3.segments(0);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[0].keys, vec![1.0; 6]);
        assert_eq!(segs[1].keys, vec![3.0; 3]);
        assert!(segs[2].keys.is_empty());
        // Freezing a cache with nothing of its own returns the same prefix.
        let p3 = p2.cache().freeze();
        assert!(Arc::ptr_eq(&p2.0, &p3.0));
        assert_eq!(p2.bytes(), (6 + 6 + 3 + 3) * 2 * 4);
    }

    #[test]
    fn truncate_undoes_uncommitted_appends() {
        let mut c = KvCache::new(1, 2);
        c.append(0, &[1.0; 2], &[1.0; 2]);
        c.commit(1);
        c.append(0, &[2.0; 4], &[2.0; 4]);
        c.truncate_own(1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.segments(0)[0].keys, vec![1.0; 2]);
    }
}

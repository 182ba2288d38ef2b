//! Sampling whole entities: the flat model draws each root row with its child counts and the
//! first child of every child table; each child table's sequence model then draws the other
//! children position by position, given the parent's row and the previous sibling's row. Times
//! are rebuilt from offsets (order holds by construction), keys are fresh and every foreign key
//! points at a row of the same shard.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chimera_core::bayesnet::Sampler;
use chimera_core::domain::{Code, Decoder, Encoder, Encoding, Value};
use chimera_core::model::{ColumnModel, Model};
use chimera_core::plan::ShardPlan;
use chimera_core::relational::{
    self, EntityModel, KEY_SEPARATOR, POSITION_CAP, PREVIOUS_PREFIX, RowColumn,
};
use chimera_core::rng;
use chimera_core::schema::{Role, ValueKind, year_start_days};
use rayon::prelude::*;

use crate::llm::children::{ChildWriter, Layout, Node, Slot, shown_as};
use crate::sample::{SampleError, attribute_of, decode_values, values_array, written_day};

/// A decoded value as a number (strings parsed), for times and counts.
trait AsNumber {
    fn number(&self) -> Option<f64>;
}

impl AsNumber for Value<'_> {
    fn number(&self) -> Option<f64> {
        match self {
            Value::Number(x) => Some(*x),
            Value::Str(s) => s.parse().ok(),
            Value::Null => None,
        }
    }
}

/// A model ready to sample: its network sampler and a decoder and encoder per column.
struct Prepared {
    model: Model,
    sampler: Sampler,
    /// Per column: decoder and encoder (None outside the network).
    decoders: Vec<Option<Decoder>>,
    encoders: Vec<Option<Encoder>>,
    attribute_of: Vec<Option<usize>>,
    by_name: HashMap<String, usize>,
}

impl Prepared {
    fn new(model: Model) -> Result<Prepared, SampleError> {
        model
            .check()
            .map_err(|e| SampleError::Model(e.to_string()))?;
        let attribute_of = attribute_of(&model);
        Ok(Prepared {
            sampler: Sampler::new(&model.network, model.attributes.len()),
            decoders: model
                .columns
                .iter()
                .map(|c| c.encoding.as_ref().map(Decoder::new))
                .collect(),
            encoders: model
                .columns
                .iter()
                .map(|c| c.encoding.as_ref().map(Encoder::new))
                .collect(),
            by_name: model
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.schema.name.clone(), i))
                .collect(),
            attribute_of,
            model,
        })
    }

    /// The network attribute modelling column `name`, if any.
    fn attribute(&self, name: &str) -> Option<(usize, usize)> {
        let c = *self.by_name.get(name)?;
        Some((c, self.attribute_of[c]?))
    }

    /// Decodes the codes of column `c` of sampled rows.
    fn decode<'m>(&'m self, c: usize, codes: &[Code], seed: u64, stream: &[u64]) -> Vec<Value<'m>> {
        match &self.decoders[c] {
            Some(dec) => decode_values(dec, codes, &mut rng::stream(seed, stream)),
            None => vec![Value::Null; codes.len()],
        }
    }

    /// Whether `code` of the numeric column `c` may decode to a value above zero (a count that
    /// may be one or more).
    fn may_be_positive(&self, c: usize, code: Code) -> bool {
        let Some(Encoding::Numeric(n)) = &self.model.columns[c].encoding else {
            return false;
        };
        let k = code as usize;
        match n.spikes.get(k) {
            Some(&x) => x > 0.0,
            None => n.bins.get(k - n.spikes.len()).is_some_and(|b| b.hi > 0.5),
        }
    }

    /// Whether `code` of column `c` stands for an empty value.
    fn is_null(&self, c: usize, code: Code) -> bool {
        self.decoders[c]
            .as_ref()
            .is_some_and(|d| d.decode_at(code, 0.5) == Value::Null)
    }

    /// The code of a value in column `c`'s encoding.
    fn encode(&self, c: usize, v: Value<'_>) -> Code {
        let Some(enc) = &self.encoders[c] else {
            return 0;
        };
        let code = match enc {
            Encoder::Categorical { .. } => match v {
                Value::Null => enc.encode_str(None),
                Value::Str(s) => enc.encode_str(Some(s)),
                Value::Number(x) => enc.encode_number(Some(x)),
            },
            Encoder::Numeric { .. } => enc.encode_number(v.number()),
        };
        code.unwrap_or(0)
    }
}

/// Attributes fixed to a code for a redraw, as (attribute, code).
type Fixed = Vec<(usize, Code)>;

/// The sampled rows of one table in a shard, in output order (grouped by parent, by position).
struct Rows<'m> {
    parent: Vec<u32>,
    position: Vec<u32>,
    /// Rows under the same parent (this one included).
    siblings: Vec<u32>,
    /// One column per entry of the table's `row`.
    cols: Vec<Vec<Value<'m>>>,
}

/// Turns a relational model into record batches, one set per table, shard by shard.
pub struct EntitySampler {
    model: Arc<EntityModel>,
    /// Writes the child rows the sequence models drew, when the model names an LLM.
    writer: Option<ChildWriter>,
    flat: Prepared,
    sequences: Vec<Option<Prepared>>,
    schemas: Vec<SchemaRef>,
    types: Vec<Vec<DataType>>,
}

/// A shard's tables: name, schema and batch of each, in the tree's order.
pub type EntityShard = Vec<(String, SchemaRef, RecordBatch)>;

/// Rounds of redrawing first children whose `order_by` came out empty.
const FIRST_REDRAWS: usize = 16;

impl EntitySampler {
    pub fn new(model: Arc<EntityModel>) -> Result<EntitySampler, SampleError> {
        let flat = Prepared::new(model.flat.clone())?;
        let sequences = model
            .tables
            .iter()
            .map(|t| t.sequence.clone().map(Prepared::new).transpose())
            .collect::<Result<_, _>>()?;
        let mut schemas = Vec::new();
        let mut types = Vec::new();
        for t in &model.tables {
            let mut fields = Vec::new();
            let mut ty = Vec::new();
            for c in &t.columns {
                let dt = DataType::from_str(&c.arrow_type).map_err(|_| SampleError::Type {
                    column: format!("{}.{}", t.name, c.name),
                    data_type: c.arrow_type.clone(),
                })?;
                fields.push(Field::new(&c.name, dt.clone(), true));
                ty.push(dt);
            }
            schemas.push(Arc::new(Schema::new(fields)));
            types.push(ty);
        }
        Ok(EntitySampler {
            writer: None,
            model,
            flat,
            sequences,
            schemas,
            types,
        })
    }

    pub fn model(&self) -> &EntityModel {
        &self.model
    }

    /// Has `writer` write the child rows the sequence models draw (Amalgam's LLM step).
    pub fn with_llm(mut self, writer: ChildWriter) -> EntitySampler {
        self.writer = Some(writer);
        self
    }

    /// Samples the entities of one shard.
    pub fn sample(&self, shard: &ShardPlan) -> Result<EntityShard, SampleError> {
        let n = shard.rows as usize;
        let tree = &self.model.tree;
        let tables = &self.model.tables;
        // The flattened entities.
        let flat_seed = rng::derive_seed(shard.seed, &[0xF1A7]);
        let mut codes = self.flat.sampler.sample(n, flat_seed);
        self.place_first_children(&mut codes, flat_seed);
        let flat_cols: Vec<Vec<Value<'_>>> = (0..self.flat.model.columns.len())
            .into_par_iter()
            .map(|c| match self.flat.attribute_of[c] {
                Some(a) => self
                    .flat
                    .decode(c, &codes[a], shard.seed, &[0xF1A7, c as u64]),
                None => vec![Value::Null; n],
            })
            .collect();
        let flat_col = |name: &str| self.flat.by_name.get(name).map(|&c| &flat_cols[c]);
        drop(codes);

        let mut all: Vec<Rows<'_>> = Vec::with_capacity(tables.len());
        // The root's rows.
        all.push(Rows {
            parent: vec![0; n],
            position: vec![0; n],
            siblings: vec![1; n],
            cols: tables[0]
                .row
                .iter()
                .map(|(name, _)| {
                    flat_col(name)
                        .cloned()
                        .unwrap_or_else(|| vec![Value::Null; n])
                })
                .collect(),
        });
        for t in 1..tables.len() {
            let node = &tree.tables[t];
            let p = node.parent.unwrap_or(0);
            let table = &tables[t];
            let parent = &all[p];
            let count_name = relational::count_column(&table.name);
            let count_at = tables[p].row.iter().position(|(n, _)| *n == count_name);
            let pn = parent.parent.len();
            let mut rows = Rows {
                parent: Vec::new(),
                position: Vec::new(),
                siblings: Vec::new(),
                cols: Vec::new(),
            };
            for i in 0..pn {
                let c = count_at
                    .and_then(|k| parent.cols[k][i].number())
                    .map_or(0, |x| {
                        x.round().clamp(0.0, table.max_children as f64) as u32
                    });
                for k in 0..c {
                    rows.parent.push(i as u32);
                    rows.position.push(k);
                    rows.siblings.push(c);
                }
            }
            let m = rows.parent.len();
            rows.cols = vec![vec![Value::Null; m]; table.row.len()];
            // Rows by position; a row's previous sibling is the row before it.
            let mut by_position: Vec<Vec<usize>> = Vec::new();
            for (i, &k) in rows.position.iter().enumerate() {
                if by_position.len() <= k as usize {
                    by_position.resize(k as usize + 1, Vec::new());
                }
                by_position[k as usize].push(i);
            }
            for (k, at) in by_position.iter().enumerate() {
                let k = k as u32;
                if at.is_empty() {
                    continue;
                }
                if k == 0 && p == 0 {
                    // The first child is part of the flat entity.
                    for (j, (name, _)) in table.row.iter().enumerate() {
                        if let Some(src) = flat_col(&format!("{}.{name}", table.name)) {
                            for &i in at {
                                rows.cols[j][i] = src[rows.parent[i] as usize];
                            }
                        }
                    }
                } else {
                    let seq = self.sequences[t].as_ref().ok_or_else(|| {
                        SampleError::Model(format!("table `{}` has no sequence model", table.name))
                    })?;
                    self.draw_position(t, k, at, &mut rows, parent, seq, shard.seed)?;
                }
                let earlier = &by_position[..k as usize];
                cohere_key_parts(table, k, at, earlier, &mut rows, shard.seed, t);
            }
            all.push(rows);
        }
        if let Some(w) = &self.writer {
            self.write_entities(w, &mut all, shard.seed)?;
            // The LLM writes each row's values; a column every sibling shares keeps the first
            // one's (the networks drew it so already).
            for (table, rows) in self.model.tables.iter().zip(all.iter_mut()) {
                for column in &table.same_for_siblings {
                    let Some(j) = table.row.iter().position(|(n, _)| n == column) else {
                        continue;
                    };
                    for i in 0..rows.position.len() {
                        if rows.position[i] > 0 {
                            rows.cols[j][i] = rows.cols[j][i - 1];
                        }
                    }
                }
            }
        }
        self.assemble(shard, &all)
    }

    /// A first child needs its place in time, and a value in each `required` column (but
    /// where its `empty_when` condition holds): flat rows that may have a child of a root's
    /// child table but drew one of those empty are drawn again, whole, with fresh streams. (In
    /// the flat row empty also means "no child", so the network alone does not hold them.)
    fn place_first_children(&self, codes: &mut [Vec<Code>], seed: u64) {
        let tree = &self.model.tree;
        // (count, column, its `empty_when` condition and value), as (column, attribute) places.
        type Check = (
            (usize, usize),
            (usize, usize),
            Option<((usize, usize), String)>,
        );
        let checks: Vec<Check> = tree.tables[0]
            .children
            .iter()
            .flat_map(|&ch| {
                let table = &self.model.tables[ch];
                let flat = |name: &str| self.flat.attribute(&format!("{}.{name}", table.name));
                let first = table.row.iter().filter_map(|(name, rc)| match rc {
                    RowColumn::First { .. } => Some((name.clone(), None)),
                    _ => None,
                });
                let (required, empty_when) = table.held_rules();
                let required = required.into_iter().map(|c| {
                    let unless = empty_when.iter().find(|(e, ..)| *e == c);
                    let unless = unless.map(|(_, q, v)| (q.clone(), v.clone()));
                    (c, unless)
                });
                let count = self.flat.attribute(&relational::count_column(&table.name));
                first
                    .chain(required)
                    .filter_map(|(name, unless)| {
                        let unless = match unless {
                            Some((q, v)) => Some((flat(&q)?, v)),
                            None => None,
                        };
                        Some((count?, flat(&name)?, unless))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if checks.is_empty() {
            return;
        }
        let holds = |c: usize, value: &str, code: Code| {
            self.flat.decoders[c]
                .as_ref()
                .is_some_and(|d| shown_as(&d.decode_at(code, 0.5), value))
        };
        for round in 0..FIRST_REDRAWS {
            let n = codes.first().map_or(0, Vec::len);
            let empty: Vec<usize> = (0..n)
                .filter(|&r| {
                    checks.iter().any(|((cc, ca), (fc, fa), unless)| {
                        self.flat.may_be_positive(*cc, codes[*ca][r])
                            && self.flat.is_null(*fc, codes[*fa][r])
                            && unless
                                .as_ref()
                                .is_none_or(|((qc, qa), v)| !holds(*qc, v, codes[*qa][r]))
                    })
                })
                .collect();
            if empty.is_empty() {
                return;
            }
            let again = self
                .flat
                .sampler
                .sample(empty.len(), rng::derive_seed(seed, &[0xF1F7, round as u64]));
            for (col, new) in codes.iter_mut().zip(&again) {
                for (j, &r) in empty.iter().enumerate() {
                    col[r] = new[j];
                }
            }
        }
    }

    /// Draws the rows `at` (all at position `k`) from the sequence model, given their parent's
    /// row, their previous sibling's row and the position.
    #[allow(clippy::too_many_arguments)]
    fn draw_position<'m>(
        &'m self,
        t: usize,
        k: u32,
        at: &[usize],
        rows: &mut Rows<'m>,
        parent: &Rows<'m>,
        seq: &'m Prepared,
        seed: u64,
    ) -> Result<(), SampleError> {
        let tables = &self.model.tables;
        let table = &tables[t];
        let p = self.model.tree.tables[t].parent.unwrap_or(0);
        let parent_row = &tables[p].row;
        // Evidence: every given attribute of the sequence model.
        let mut evidence: Vec<(usize, Vec<Code>)> = Vec::new();
        for (c, col) in seq.model.columns.iter().enumerate() {
            let Some(a) = seq.attribute_of[c] else {
                continue;
            };
            let name = &col.schema.name;
            let values: Option<Vec<Value<'_>>> =
                if let Some(pn) = name.strip_prefix(relational::PARENT_PREFIX) {
                    parent_row.iter().position(|(n, _)| n == pn).map(|j| {
                        at.iter()
                            .map(|&i| parent.cols[j][rows.parent[i] as usize])
                            .collect()
                    })
                } else if let Some(own) = name.strip_prefix(PREVIOUS_PREFIX) {
                    table.row.iter().position(|(n, _)| n == own).map(|j| {
                        at.iter()
                            .map(|&i| {
                                if k == 0 {
                                    Value::Null
                                } else {
                                    rows.cols[j][i - 1]
                                }
                            })
                            .collect()
                    })
                } else if name == relational::POSITION_COLUMN {
                    Some(vec![
                        Value::Number((k as i64).min(POSITION_CAP) as f64);
                        at.len()
                    ])
                } else if name == relational::REMAINING_COLUMN {
                    Some(
                        at.iter()
                            .map(|&i| {
                                let after = rows.siblings[i] as i64 - 1 - k as i64;
                                Value::Number(after.min(POSITION_CAP) as f64)
                            })
                            .collect(),
                    )
                } else {
                    None
                };
            if let Some(v) = values {
                evidence.push((a, v.into_iter().map(|x| seq.encode(c, x)).collect()));
            }
        }
        // Columns every sibling shares: a later sibling's is the previous one's, and the rest
        // of its row is drawn given it.
        let same: Vec<usize> = if k > 0 {
            table
                .same_for_siblings
                .iter()
                .filter_map(|n| table.row.iter().position(|(m, _)| m == n))
                .collect()
        } else {
            Vec::new()
        };
        for &j in &same {
            if let Some((c, a)) = seq.attribute(&table.row[j].0) {
                let codes = at.iter().map(|&i| seq.encode(c, rows.cols[j][i - 1]));
                evidence.push((a, codes.collect()));
            }
        }
        let given: Vec<(usize, &[Code])> =
            evidence.iter().map(|(a, v)| (*a, v.as_slice())).collect();
        let stream = rng::derive_seed(seed, &[0x5E0, t as u64, k as u64]);
        let mut codes = seq.sampler.sample_given(at.len(), stream, &given);
        // A first child needs its place in time: the network may (rarely) draw an empty
        // `order_by` for position 0, so such rows are drawn again, whole, with fresh streams.
        let first = table.row.iter().find_map(|(n, rc)| match rc {
            RowColumn::First { .. } if k == 0 => seq.attribute(n),
            _ => None,
        });
        // `first_where`: the first child holds a value exactly where the parent's column is
        // set. A row that should hold it is drawn again with it fixed (the rest of the row
        // follows it); one that should not, again until it does not.
        let rules: Vec<(usize, Code, Vec<bool>)> = if k == 0 {
            (table.first_where.iter())
                .filter_map(|(set, column, value)| {
                    let j = parent_row.iter().position(|(n, _)| n == set)?;
                    let (c, a) = seq.attribute(column)?;
                    let code = seq.encode(c, Value::Str(value));
                    let wants = (at.iter())
                        .map(|&i| parent.cols[j][rows.parent[i] as usize] != Value::Null)
                        .collect();
                    Some((a, code, wants))
                })
                .collect()
        } else {
            Vec::new()
        };
        let wanted = |r: usize| {
            (rules.iter())
                .filter(|(_, _, wants)| wants[r])
                .map(|&(a, code, _)| (a, code))
                .collect::<Vec<_>>()
        };
        for round in 0..FIRST_REDRAWS {
            let bad: Vec<usize> = (0..at.len())
                .filter(|&r| {
                    first.is_some_and(|(c, a)| seq.is_null(c, codes[a][r]))
                        || (rules.iter())
                            .any(|(a, code, wants)| (codes[*a][r] == *code) != wants[r])
                })
                .collect();
            if bad.is_empty() {
                break;
            }
            // Rows that fix the same values are drawn together.
            let mut groups: Vec<(Fixed, Vec<usize>)> = Vec::new();
            for &r in &bad {
                let fixed = wanted(r);
                match groups.iter_mut().find(|(f, _)| *f == fixed) {
                    Some((_, rs)) => rs.push(r),
                    None => groups.push((fixed, vec![r])),
                }
            }
            for (g, (fixed, group)) in groups.iter().enumerate() {
                let seed = rng::derive_seed(stream, &[round as u64, g as u64]);
                redraw(seq, &evidence, &mut codes, group, fixed, seed);
            }
        }
        // Rows the network all but forces to the value where the rule says not (none in the
        // demo): drawn once more with the commonest other value of such rows fixed.
        for (rule, (a, code, wants)) in rules.iter().enumerate() {
            let stuck: Vec<usize> = (0..at.len())
                .filter(|&r| !wants[r] && codes[*a][r] == *code)
                .collect();
            let mut counts: HashMap<Code, usize> = HashMap::new();
            for r in (0..at.len()).filter(|&r| !wants[r] && codes[*a][r] != *code) {
                *counts.entry(codes[*a][r]).or_default() += 1;
            }
            let Some(other) = (counts.into_iter())
                .max_by_key(|&(c, n)| (n, std::cmp::Reverse(c)))
                .map(|(c, _)| c)
            else {
                continue;
            };
            if stuck.is_empty() {
                continue;
            }
            let seed = rng::derive_seed(stream, &[0xF1E5, rule as u64]);
            redraw(seq, &evidence, &mut codes, &stuck, &[(*a, other)], seed);
        }
        for (j, (name, _)) in table.row.iter().enumerate() {
            let Some((c, a)) = seq.attribute(name) else {
                continue;
            };
            let cells = seq.decode(c, &codes[a], stream, &[0xDEC, j as u64]);
            for (&i, v) in at.iter().zip(cells) {
                rows.cols[j][i] = v;
            }
        }
        // The value itself, not its code (a value merged into `other` decodes as another).
        for &j in &same {
            for &i in at {
                rows.cols[j][i] = rows.cols[j][i - 1];
            }
        }
        Ok(())
    }

    /// The LLM writes every entity's child rows (Amalgam's step): the drafts the models drew
    /// are rewritten in place; child counts, keys, empty times and `empty_when` conditions
    /// stay as drawn.
    fn write_entities<'m>(
        &'m self,
        w: &ChildWriter,
        all: &mut [Rows<'m>],
        seed: u64,
    ) -> Result<(), SampleError> {
        let tables = &self.model.tables;
        let tree = &self.model.tree;
        // What each column is to the LLM, for rows drawn by `prep` (whose columns for this
        // table carry `prefix`).
        let slots = |t: usize, prep: Option<&'m Prepared>, prefix: &str| -> Vec<Slot<'m>> {
            tables[t]
                .row
                .iter()
                .map(|(name, rc)| {
                    // An `empty_when` condition stays as drawn, so the rule's column can be
                    // written empty where it holds.
                    let condition = tables[t].empty_when.iter().any(|(_, q, _)| q == name);
                    let Some(prep) = prep else {
                        return Slot::Keep;
                    };
                    let column = prep
                        .attribute(&format!("{prefix}{name}"))
                        .and_then(|(c, _)| {
                            let col = &prep.model.columns[c];
                            col.encoding
                                .as_ref()
                                .filter(|_| col.role != Role::Identifier)
                        });
                    match (rc, column) {
                        (RowColumn::Count { .. }, _) => Slot::Keep,
                        // The LLM writes the whole reference; the part is the model's aid.
                        (RowColumn::KeyPart { .. }, _) => Slot::Skip,
                        // Not an output column: the rule it sets is held below.
                        (RowColumn::Set { .. } | RowColumn::Band { .. }, _) => Slot::Skip,
                        (_, Some(_)) if t == 0 || condition => Slot::Keep,
                        (RowColumn::First { .. } | RowColumn::Gap { .. }, Some(enc)) => {
                            Slot::Order(enc)
                        }
                        (_, Some(enc)) => Slot::Write(enc),
                        (_, None) => Slot::Skip,
                    }
                })
                .collect()
        };
        // Per table: slots of rows the flat model drew (the root's, and the first child of each
        // of its tables) and of rows a sequence model drew.
        let flat_slots: Vec<Vec<Slot<'m>>> = (0..tables.len())
            .map(|t| match t {
                0 => slots(0, Some(&self.flat), ""),
                _ => slots(t, Some(&self.flat), &format!("{}.", tables[t].name)),
            })
            .collect();
        let seq_slots: Vec<Vec<Slot<'m>>> = (0..tables.len())
            .map(|t| slots(t, self.sequences[t].as_ref(), ""))
            .collect();
        // Per table, per parent row: its rows (contiguous, in position order).
        let ranges: Vec<Vec<std::ops::Range<usize>>> = all
            .iter()
            .enumerate()
            .map(|(t, rows)| {
                let Some(p) = tree.tables[t].parent else {
                    return Vec::new();
                };
                let mut r = vec![0..0; all[p].parent.len()];
                for (i, &p) in rows.parent.iter().enumerate() {
                    let range = &mut r[p as usize];
                    if range.start == range.end {
                        *range = i..i + 1;
                    } else {
                        range.end = i + 1;
                    }
                }
                r
            })
            .collect();
        fn node<'s, 'm>(
            t: usize,
            i: usize,
            all: &[Rows<'m>],
            tree: &relational::EntityTree,
            ranges: &[Vec<std::ops::Range<usize>>],
            slots: (&'s [Vec<Slot<'m>>], &'s [Vec<Slot<'m>>]),
        ) -> Node<'s, 'm> {
            let flat = t == 0 || (tree.tables[t].parent == Some(0) && all[t].position[i] == 0);
            Node {
                slots: if flat { &slots.0[t] } else { &slots.1[t] },
                values: all[t].cols.iter().map(|c| c[i]).collect(),
                children: tree.tables[t]
                    .children
                    .iter()
                    .map(|&ct| {
                        ranges[ct][i]
                            .clone()
                            .map(|r| node(ct, r, all, tree, ranges, slots))
                            .collect()
                    })
                    .collect(),
            }
        }
        fn put<'m>(
            t: usize,
            i: usize,
            n: Node<'_, 'm>,
            all: &mut [Rows<'m>],
            tree: &relational::EntityTree,
            ranges: &[Vec<std::ops::Range<usize>>],
        ) {
            for (col, v) in all[t].cols.iter_mut().zip(n.values) {
                col[i] = v;
            }
            for (&ct, rows) in tree.tables[t].children.iter().zip(n.children) {
                for (r, child) in ranges[ct][i].clone().zip(rows) {
                    put(ct, r, child, all, tree, ranges);
                }
            }
        }
        let layout = Layout {
            tables: tables
                .iter()
                .zip(&tree.tables)
                .map(|(t, node)| {
                    let columns = t.row.iter().map(|(n, _)| n.clone()).collect();
                    (t.name.clone(), columns, node.children.clone())
                })
                .collect(),
            last_when: tables.iter().map(|t| t.last_when.clone()).collect(),
            last_is: tables.iter().map(|t| t.last_is.clone()).collect(),
            first_where: (tables.iter().zip(&tree.tables))
                .map(|(t, node)| {
                    let parent = &tables[node.parent.unwrap_or(0)].row;
                    (t.first_where.iter())
                        .filter_map(|(set, c, v)| {
                            let q = parent.iter().position(|(n, _)| n == set)?;
                            Some((q, c.clone(), v.clone()))
                        })
                        .collect()
                })
                .collect(),
            // With a presence column's: its times empty where it is 0, set where it is 1.
            required: tables
                .iter()
                .map(|t| {
                    let at = |c: &str| t.row.iter().position(|(n, _)| n == c);
                    t.held_rules().0.iter().filter_map(|c| at(c)).collect()
                })
                .collect(),
            empty_when: tables
                .iter()
                .map(|t| {
                    let at = |c: &str| t.row.iter().position(|(n, _)| n == c);
                    let rules = t.held_rules().1;
                    rules
                        .into_iter()
                        .filter_map(|(c, q, v)| Some((at(&c)?, at(&q)?, v)))
                        .collect()
                })
                .collect(),
        };
        let mut entities: Vec<Node<'_, 'm>> = (0..all[0].parent.len())
            .map(|i| node(0, i, all, tree, &ranges, (&flat_slots, &seq_slots)))
            .collect();
        w.write(&layout, &mut entities, rng::derive_seed(seed, &[0x11A]))
            .map_err(|e| SampleError::Model(format!("the LLM writing entities: {e}")))?;
        for (i, e) in entities.into_iter().enumerate() {
            put(0, i, e, all, tree, &ranges);
        }
        Ok(())
    }

    /// Places each `AfterLast` column: the latest `base` among the row's children (the day it
    /// falls on, for a date) plus the row's non-negative offset; empty without children.
    fn place_after_last(
        &self,
        all: &[Rows<'_>],
        absolute: &mut [HashMap<String, Vec<Option<f64>>>],
    ) {
        let tree = &self.model.tree;
        for (t, table) in self.model.tables.iter().enumerate() {
            for (j, (_, rc)) in table.row.iter().enumerate() {
                let RowColumn::AfterLast {
                    column,
                    child,
                    base,
                } = rc
                else {
                    continue;
                };
                let Some(k) = tree.index(child) else { continue };
                let theirs = parent_days(&absolute[k], &self.model.tables[k], &all[k], base);
                let mut latest: Vec<Option<f64>> = vec![None; all[t].parent.len()];
                for (&p, v) in all[k].parent.iter().zip(theirs) {
                    if let Some(v) = v {
                        let l = &mut latest[p as usize];
                        *l = Some(l.map_or(v, |l: f64| l.max(v)));
                    }
                }
                let whole_days = table
                    .columns
                    .iter()
                    .any(|c| c.name == *column && c.kind == ValueKind::Date);
                let placed: Vec<Option<f64>> = latest
                    .iter()
                    .zip(&all[t].cols[j])
                    .map(|(b, d)| {
                        let b = if whole_days { b.map(written_day) } else { *b };
                        Some(b? + d.number()?.max(0.0))
                    })
                    .collect();
                absolute[t].insert(column.clone(), placed);
            }
        }
    }

    /// Output tables from the sampled rows: times from offsets, fresh keys, reference keys split.
    fn assemble(&self, shard: &ShardPlan, all: &[Rows<'_>]) -> Result<EntityShard, SampleError> {
        let tables = &self.model.tables;
        let tree = &self.model.tree;
        // Absolute values (days or numbers) of each table's ordered and `after` columns.
        let mut absolute: Vec<HashMap<String, Vec<Option<f64>>>> = Vec::new();
        let mut keys: Vec<Vec<i64>> = Vec::new();
        for (t, table) in tables.iter().enumerate() {
            let rows = &all[t];
            let m = rows.parent.len();
            let col_of = |name: &str| table.row.iter().position(|(n, _)| n == name);
            // Keys: the root numbers entities like single-table rows; child tables number rows
            // inside the shard's own range so shards never collide.
            let key: Vec<i64> = if t == 0 {
                (0..m as u64)
                    .map(|i| (shard.first_row + i + 1) as i64)
                    .collect()
            } else {
                let base = (shard.shard as i64 + 1) * CHILD_KEY_BASE;
                (0..m as i64).map(|i| base + i + 1).collect()
            };
            // Times.
            let mut abs: HashMap<String, Vec<Option<f64>>> = HashMap::new();
            let order = table.row.iter().find_map(|(_, rc)| match rc {
                RowColumn::First {
                    column,
                    anchor,
                    anchor_is_year,
                    ..
                } => Some((column.clone(), anchor.clone(), *anchor_is_year)),
                _ => None,
            });
            let gap = table.row.iter().find_map(|(n, rc)| match rc {
                RowColumn::Gap { base, .. } => Some((n.clone(), base.clone())),
                _ => None,
            });
            let afters: Vec<(String, String, usize, bool)> = table
                .row
                .iter()
                .enumerate()
                .filter_map(|(j, (_, rc))| match rc {
                    RowColumn::After {
                        column,
                        base,
                        signed,
                    } => Some((column.clone(), base.clone(), j, *signed)),
                    _ => None,
                })
                .collect();
            let plain = |name: &str| -> Vec<Option<f64>> {
                match col_of(name) {
                    Some(j) => rows.cols[j].iter().map(AsNumber::number).collect(),
                    None => vec![None; m],
                }
            };
            // Columns every absolute value depends on, resolved row by row.
            let mut names: Vec<String> = afters.iter().map(|(c, ..)| c.clone()).collect();
            if let Some((c, ..)) = &order {
                names.push(c.clone());
            }
            for (_, base, ..) in &afters {
                if !names.contains(base) {
                    abs.insert(base.clone(), plain(base));
                }
            }
            for n in &names {
                abs.insert(n.clone(), vec![None; m]);
            }
            if let Some((_, base)) = &gap
                && !names.contains(base)
                && !abs.contains_key(base)
            {
                abs.insert(base.clone(), plain(base));
            }
            // The parent's anchor value of each parent row, in days (an integer year counts
            // from 1 January).
            let anchor_days: Option<Vec<Option<f64>>> = match (&order, tree.tables[t].parent) {
                (Some((_, Some(keys), is_year)), Some(p)) => {
                    let mut v = vec![None; all[p].parent.len()];
                    for a in keys.columns() {
                        let w = parent_days(&absolute[p], &tables[p], &all[p], &a);
                        for (x, y) in v.iter_mut().zip(w) {
                            *x = x.or(y);
                        }
                    }
                    Some(if *is_year {
                        v.into_iter().map(|d| d.map(year_start_days)).collect()
                    } else {
                        v
                    })
                }
                _ => None,
            };
            for i in 0..m {
                if let Some((c, anchor, _)) = &order {
                    let j = col_of(c);
                    let v = if rows.position[i] == 0 {
                        let own = j.and_then(|j| rows.cols[j][i].number());
                        match anchor {
                            Some(_) => {
                                let base = anchor_days
                                    .as_ref()
                                    .and_then(|v| v[rows.parent[i] as usize]);
                                match (own, base) {
                                    (Some(o), Some(b)) => Some(b + o),
                                    _ => None,
                                }
                            }
                            None => own,
                        }
                    } else {
                        let (gname, base) = gap
                            .as_ref()
                            .map_or((String::new(), c.clone()), |g| g.clone());
                        let g = col_of(&gname).and_then(|j| rows.cols[j][i].number());
                        let prev = abs
                            .get(&base)
                            .and_then(|v| v[i - 1])
                            .or_else(|| abs.get(c).and_then(|v| v[i - 1]));
                        match (g, prev) {
                            (Some(g), Some(p)) => Some(p + g.max(0.0)),
                            (None, Some(p)) => Some(p),
                            _ => None,
                        }
                    };
                    if let Some(col) = abs.get_mut(c) {
                        col[i] = v;
                    }
                }
                // `after` columns, in as many rounds as their chain is long.
                for _ in 0..afters.len() {
                    for (c, base, j, signed) in &afters {
                        let b = abs.get(base).and_then(|v| v[i]);
                        let d = rows.cols[*j][i].number();
                        let v = match (b, d) {
                            (Some(b), Some(d)) => Some(b + if *signed { d } else { d.max(0.0) }),
                            _ => None,
                        };
                        if let Some(col) = abs.get_mut(c) {
                            col[i] = v;
                        }
                    }
                }
            }
            // Siblings that end at a parent's column are scaled to end there.
            let ends_at = table.row.iter().find_map(|(_, rc)| match rc {
                RowColumn::First {
                    column,
                    ends_at: Some(e),
                    ..
                } => Some((column, e)),
                _ => None,
            });
            if let (Some((c, e)), Some(p)) = (ends_at, tree.tables[t].parent) {
                // The times that hang on the order: it, and `after` columns of those.
                let mut chained = vec![c.clone()];
                for _ in 0..afters.len() {
                    for (a, base, ..) in &afters {
                        if chained.contains(base) && !chained.contains(a) {
                            chained.push(a.clone());
                        }
                    }
                }
                let end = parent_days(&absolute[p], &tables[p], &all[p], e);
                let anchor = anchor_days.as_deref();
                end_siblings_at(&mut abs, c, &chained, &rows.parent, &end, anchor);
            }
            // Columns after their rows' latest child are placed once the children are.
            for (_, rc) in &table.row {
                if let RowColumn::AfterLast { column, .. } = rc {
                    abs.insert(column.clone(), vec![None; m]);
                }
            }
            absolute.push(abs);
            keys.push(key);
        }
        self.place_after_last(all, &mut absolute);
        let mut out = Vec::new();
        for (t, table) in tables.iter().enumerate() {
            let rows = &all[t];
            let m = rows.parent.len();
            let col_of = |name: &str| table.row.iter().position(|(n, _)| n == name);
            let (abs, key) = (&absolute[t], &keys[t]);
            // Output columns.
            let node = &tree.tables[t];
            let mut arrays: Vec<ArrayRef> = Vec::new();
            for (ci, col) in table.columns.iter().enumerate() {
                let name = &col.name;
                let target = &self.types[t][ci];
                let raw: ArrayRef = if table.primary_key.as_deref() == Some(name.as_str()) {
                    self.key_column(t, col.kind, key, shard)
                } else if let Some(pos) = node.parent_columns.iter().position(|c| c == name)
                    && pos == 0
                {
                    let p = node.parent.unwrap_or(0);
                    let pk: Vec<i64> = rows.parent.iter().map(|&i| keys[p][i as usize]).collect();
                    self.key_column(p, col.kind, &pk, shard)
                } else if let Some((_, a)) = node
                    .ancestor_keys
                    .iter()
                    .find(|(cols, _)| cols.first() == Some(name))
                {
                    let mut idx: Vec<u32> = rows.parent.clone();
                    let mut cur = node.parent.unwrap_or(0);
                    while cur != *a {
                        idx = idx.iter().map(|&i| all[cur].parent[i as usize]).collect();
                        cur = tree.tables[cur].parent.unwrap_or(0);
                    }
                    let ak: Vec<i64> = idx.iter().map(|&i| keys[*a][i as usize]).collect();
                    self.key_column(*a, col.kind, &ak, shard)
                } else if let Some((j, part)) =
                    table
                        .row
                        .iter()
                        .enumerate()
                        .find_map(|(j, (_, rc))| match rc {
                            RowColumn::Reference { columns, .. } => {
                                columns.iter().position(|c| c == name).map(|k| (j, k))
                            }
                            _ => None,
                        })
                {
                    let mut b = StringBuilder::with_capacity(m, m * 8);
                    for cell in &rows.cols[j] {
                        match cell {
                            Value::Str(s) => b.append_option(s.split(KEY_SEPARATOR).nth(part)),
                            _ => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                } else if let Some(v) = abs.get(name) {
                    numbers_array(col.kind, v)
                } else {
                    let model = self.column_model(t, name);
                    match (model.map(|m| m.role), col_of(name)) {
                        (Some(Role::Identifier), _) => {
                            let salt = rng::mix64(t as u64 ^ ((ci as u64) << 8));
                            match model.and_then(|m| m.format.as_ref()) {
                                Some(f) if col.kind == ValueKind::String => {
                                    // Root keys are dense (distinct values); child keys are
                                    // numbered per shard, far beyond the format's room.
                                    let v = key.iter().map(|&k| {
                                        Some(if t == 0 {
                                            f.render(k as u64, salt)
                                        } else {
                                            f.render_hashed(k as u64, salt)
                                        })
                                    });
                                    Arc::new(StringArray::from_iter(v)) as ArrayRef
                                }
                                _ => key_array(col.kind, key, Some(salt)),
                            }
                        }
                        (_, Some(j)) => values_array(col.kind, &rows.cols[j]),
                        (_, None) => values_array(col.kind, &vec![Value::Null; m]),
                    }
                };
                let arr = if raw.data_type() == target {
                    raw
                } else {
                    cast(&raw, target).map_err(|e| SampleError::Arrow {
                        column: format!("{}.{name}", table.name),
                        source: e,
                    })?
                };
                arrays.push(arr);
            }
            let batch = RecordBatch::try_new(self.schemas[t].clone(), arrays).map_err(|e| {
                SampleError::Arrow {
                    column: table.name.clone(),
                    source: e,
                }
            })?;
            out.push((table.name.clone(), self.schemas[t].clone(), batch));
        }
        Ok(out)
    }

    /// A key column of table `owner` from its keys: numbers as they are; strings in the
    /// table's key format, else 16 hex digits. Child keys (numbered from each shard's
    /// [`CHILD_KEY_BASE`]) are renumbered densely for the format, each shard in its own range
    /// (its first entity times the most rows an entity can have in the table), so every value
    /// is distinct.
    fn key_column(
        &self,
        owner: usize,
        kind: ValueKind,
        keys: &[i64],
        shard: &ShardPlan,
    ) -> ArrayRef {
        let Some(f) = self.model.tables[owner]
            .key_format
            .as_ref()
            .filter(|_| kind == ValueKind::String)
        else {
            return key_array(kind, keys, None);
        };
        let salt = rng::mix64(0x4B_4559 ^ owner as u64);
        let tree = &self.model.tree;
        let (base, per_entity) = if owner == 0 {
            (0, 1)
        } else {
            let mut per_entity = 1u64;
            let mut cur = owner;
            while let Some(p) = tree.tables[cur].parent {
                per_entity = per_entity.saturating_mul(self.model.tables[cur].max_children as u64);
                cur = p;
            }
            ((shard.shard as i64 + 1) * CHILD_KEY_BASE, per_entity)
        };
        let first = if owner == 0 {
            0
        } else {
            shard.first_row.saturating_mul(per_entity)
        };
        let v = keys
            .iter()
            .map(|&k| Some(f.render(first + (k - base) as u64, salt)));
        Arc::new(StringArray::from_iter(v))
    }

    /// The model column that draws a table's column (None when no model has it).
    fn column_model(&self, t: usize, name: &str) -> Option<&ColumnModel> {
        let table = &self.model.tables[t];
        let own = if t == 0 {
            Some(&self.model.flat)
        } else {
            table.sequence.as_ref()
        };
        own.and_then(|m| m.columns.iter().find(|c| c.schema.name == name))
            .or_else(|| {
                // The first child of a root child lives in the flat model.
                if self.model.tree.tables[t].parent != Some(0) {
                    return None;
                }
                let wide = format!("{}.{name}", table.name);
                self.model
                    .flat
                    .columns
                    .iter()
                    .find(|c| c.schema.name == wide)
            })
    }
}

/// Draws the rows `rows` of a position again, whole, given their evidence and with the
/// attributes in `fixed` set to their codes (a first child's redraw).
fn redraw(
    seq: &Prepared,
    evidence: &[(usize, Vec<Code>)],
    codes: &mut [Vec<Code>],
    rows: &[usize],
    fixed: &[(usize, Code)],
    seed: u64,
) {
    let mut sub: Vec<(usize, Vec<Code>)> = evidence
        .iter()
        .map(|(a, v)| (*a, rows.iter().map(|&r| v[r]).collect()))
        .collect();
    sub.extend(fixed.iter().map(|&(a, code)| (a, vec![code; rows.len()])));
    let given: Vec<(usize, &[Code])> = sub.iter().map(|(a, v)| (*a, v.as_slice())).collect();
    let again = seq.sampler.sample_given(rows.len(), seed, &given);
    for (attr, col) in codes.iter_mut().enumerate() {
        for (j, &r) in rows.iter().enumerate() {
            col[r] = again[attr][j];
        }
    }
}

/// Makes the composite references of the rows `at` (position `k` of table `t`) agree with their
/// modelled key parts ([`RowColumn::KeyPart`]): a row whose reference has another part takes
/// the reference of a row drawn at the same position (else at an earlier one) that has the
/// drawn part, so references keep the model's distribution within each part value.
fn cohere_key_parts<'m>(
    table: &relational::EntityTable,
    k: u32,
    at: &[usize],
    earlier: &[Vec<usize>],
    rows: &mut Rows<'m>,
    seed: u64,
    t: usize,
) {
    for (j, (_, rc)) in table.row.iter().enumerate() {
        let RowColumn::KeyPart {
            reference,
            part,
            constant,
            ..
        } = rc
        else {
            continue;
        };
        if *constant && k > 0 {
            // Siblings share the part: a later sibling takes the previous one's (the row
            // before it).
            for &i in at {
                rows.cols[j][i] = rows.cols[j][i - 1];
            }
        }
        let Some(r) = table.row.iter().position(|(n, _)| n == reference) else {
            continue;
        };
        let part_of = |v: Value<'m>| match v {
            Value::Str(s) => s.split(KEY_SEPARATOR).nth(*part),
            _ => None,
        };
        let off: Vec<(usize, &'m str)> = at
            .iter()
            .filter_map(|&i| match rows.cols[j][i] {
                Value::Str(want) => (part_of(rows.cols[r][i]) != Some(want)).then_some((i, want)),
                _ => None,
            })
            .collect();
        if off.is_empty() {
            continue;
        }
        // Donor references by part value (copied before any row changes): this position's
        // rows, then the nearest earlier position's while some wanted part has none.
        // (A part has at most KEY_PART_VALUES values: a short list beats a hash map.)
        let mut donors: Vec<(&'m str, Vec<Value<'m>>)> = Vec::new();
        let find = |donors: &[(&'m str, Vec<Value<'m>>)], p: &str| {
            donors.iter().position(|(q, _)| *q == p)
        };
        for pool in std::iter::once(at).chain(earlier.iter().rev().map(Vec::as_slice)) {
            if off.iter().all(|(_, want)| find(&donors, want).is_some()) {
                break;
            }
            for &i in pool {
                let v = rows.cols[r][i];
                if let Some(p) = part_of(v) {
                    match find(&donors, p) {
                        Some(d) => donors[d].1.push(v),
                        None => donors.push((p, vec![v])),
                    }
                }
            }
        }
        let mut rng = rng::stream(seed, &[0xC0E5, t as u64, k as u64, j as u64]);
        for (i, want) in off {
            if let Some(d) = find(&donors, want) {
                let pool = &donors[d].1;
                rows.cols[r][i] = pool[rand::Rng::random_range(&mut rng, 0..pool.len())];
            }
        }
    }
}

/// Integer keys as they are, or (with `salt`, or for string columns) as 16 hex digits of a
/// bijective mix: unique and not guessable from position.
/// Child keys of shard `s` are numbered from `(s + 1) * CHILD_KEY_BASE`, so shards never share
/// one.
const CHILD_KEY_BASE: i64 = 10_000_000_000;

fn key_array(kind: ValueKind, keys: &[i64], salt: Option<u64>) -> ArrayRef {
    match (kind, salt) {
        (ValueKind::Integer | ValueKind::Float, None) => {
            let mut b = Int64Builder::with_capacity(keys.len());
            b.append_slice(keys);
            Arc::new(b.finish())
        }
        _ => {
            let key = salt.unwrap_or(0xC41D);
            let mut b = StringBuilder::with_capacity(keys.len(), keys.len() * 16);
            for &k in keys {
                b.append_value(format!("{:016x}", rng::mix64(k as u64 ^ key)));
            }
            Arc::new(b.finish())
        }
    }
}

fn numbers_array(kind: ValueKind, v: &[Option<f64>]) -> ArrayRef {
    let values: Vec<Value<'_>> = v
        .iter()
        .map(|x| x.map_or(Value::Null, Value::Number))
        .collect();
    values_array(kind, &values)
}

/// Days of a table's column for each of its rows: its absolute time when it has one (an ordered
/// or `after` column), else its modelled value.
fn parent_days(
    absolute: &HashMap<String, Vec<Option<f64>>>,
    table: &relational::EntityTable,
    rows: &Rows<'_>,
    column: &str,
) -> Vec<Option<f64>> {
    match absolute.get(column) {
        Some(v) => v.clone(),
        None => match table.row.iter().position(|(n, _)| n == column) {
            Some(j) => rows.cols[j].iter().map(AsNumber::number).collect(),
            None => vec![None; rows.parent.len()],
        },
    }
}

/// Moves each parent's siblings so that the last one's `order` time is the parent's `end`: times
/// after the pivot (the parent's anchor, else the first sibling's time) up to the last one's are
/// scaled from it, later ones (the last sibling's end) shifted with it, and earlier ones kept, a
/// map that keeps every order and stretches nothing beyond `end`; when the last sibling is not
/// after the pivot all are shifted. Siblings are contiguous and in order; a parent without an
/// end is left as is.
fn end_siblings_at(
    abs: &mut HashMap<String, Vec<Option<f64>>>,
    order: &str,
    columns: &[String],
    parent: &[u32],
    end: &[Option<f64>],
    anchor: Option<&[Option<f64>]>,
) {
    let m = parent.len();
    let mut start = 0;
    while start < m {
        let p = parent[start] as usize;
        let stop = (start..m).find(|&i| parent[i] as usize != p).unwrap_or(m);
        let times = &abs[order];
        let pivot = anchor.map_or(times[start], |a| a[p]);
        if let (Some(e), Some(last), Some(pivot)) = (end[p], times[stop - 1], pivot) {
            let map = |v: f64| -> f64 {
                if last > pivot && e >= pivot {
                    if v > last {
                        e + (v - last)
                    } else if v > pivot {
                        pivot + (v - pivot) * (e - pivot) / (last - pivot)
                    } else {
                        v
                    }
                } else {
                    v + (e - last)
                }
            };
            for c in columns {
                if let Some(col) = abs.get_mut(c) {
                    for v in col[start..stop].iter_mut().flatten() {
                        *v = map(*v);
                    }
                }
            }
        }
        start = stop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_end_at_the_parent_and_a_time_after_the_last_is_shifted_not_stretched() {
        // One parent anchored at day 100 and ending at day 110. Its three siblings start within
        // a second of the anchor (as a noisy model may draw them), and the last one ends 2 days
        // after it starts. Scaling that last end by the same factor (~10 days / 1 second) would
        // throw it millions of days away.
        let second = 1.0 / 86_400.0;
        let starts = vec![
            Some(100.0 + 0.2 * second),
            Some(100.0 + 0.5 * second),
            Some(100.0 + second),
        ];
        let ends = vec![
            Some(100.0 + 0.5 * second),
            Some(100.0 + second),
            Some(100.0 + second + 2.0),
        ];
        let mut abs = HashMap::from([("in".to_string(), starts), ("out".to_string(), ends)]);
        let columns = ["in".to_string(), "out".to_string()];
        let anchor = [Some(100.0)];
        end_siblings_at(
            &mut abs,
            "in",
            &columns,
            &[0, 0, 0],
            &[Some(110.0)],
            Some(&anchor),
        );
        let (ins, outs) = (&abs["in"], &abs["out"]);
        assert_eq!(
            ins[2],
            Some(110.0),
            "the last sibling starts at the parent's end"
        );
        assert!((outs[2].unwrap() - 112.0).abs() < 1e-9, "{:?}", outs[2]);
        let order: Vec<f64> = [ins[0], outs[0], ins[1], outs[1], ins[2], outs[2]]
            .iter()
            .map(|x| x.unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        assert!(order[0] > 100.0 && order[0] < 110.0);
    }
}

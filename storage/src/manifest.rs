//! The run manifest: which committed shard attempts make up the output, while it runs and once finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::output::{committed_part_path, validate_table_name};

/// Format tag written into every manifest; readers refuse other formats.
pub const MANIFEST_FORMAT: &str = "chimera-manifest/1";

/// What the manifest records about one written part.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PartInfo {
    /// Path relative to the output root, e.g. `adult/part-00000.parquet`
    /// (or `_attempts/adult/part-00000-a1.parquet` before the commit).
    pub path: String,
    /// Shard the rows belong to.
    pub shard: u32,
    /// Attempt that wrote the file.
    pub attempt: u32,
    /// Rows in the file.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 hex of the file bytes.
    pub sha256: String,
}

/// Everything a reader needs to know about a run, finished (`complete`) or in progress.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Whether the run finished; false in the progress manifest written while parts are committed.
    // Manifests from before this field were only ever written for finished runs.
    #[serde(default = "written_before_progress_manifests")]
    pub complete: bool,
    /// Version of chimera that wrote the run.
    pub chimera_version: String,
    /// SHA-256 hex of the model artifact the rows were sampled from.
    pub model_digest: String,
    /// Job seed; shard seeds derive from it.
    pub seed: u64,
    /// Privacy guarantee the output carries.
    pub privacy: ManifestPrivacy,
    /// The table the model describes (the run's main output table).
    #[serde(default)]
    pub table: String,
    /// Rows (or entities) asked for; 0 in manifests from before this field.
    #[serde(default)]
    pub rows_requested: u64,
    /// Planned rows (or entities) per shard.
    pub rows_per_part: u64,
    /// Table name to its committed parts.
    pub tables: BTreeMap<String, ManifestTable>,
    /// Seconds since the Unix epoch when the manifest was created.
    pub created_unix: u64,
}

fn written_before_progress_manifests() -> bool {
    true
}

/// Privacy guarantee stated for a run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ManifestPrivacy {
    /// Whether the model was fitted under differential privacy.
    pub mode: PrivacyMode,
    /// Total ε spent, when `mode` is `dp`.
    pub epsilon: Option<f64>,
    /// Total δ spent, when `mode` is `dp`.
    pub delta: Option<f64>,
    /// Caveats a reader must know, e.g. "real exemplars were shown to the LLM".
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Privacy mode of a run, serialised as `"dp"` or `"none"`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyMode {
    /// Differentially private fit.
    Dp,
    /// No formal privacy guarantee.
    None,
}

/// One output table: its columns and the committed part of each shard.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ManifestTable {
    /// Rows across all parts.
    pub rows: u64,
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Committed parts, one per shard, sorted by shard.
    pub parts: Vec<PartInfo>,
}

impl ManifestTable {
    /// An empty table with the given columns.
    pub fn new(columns: Vec<String>) -> Self {
        ManifestTable {
            rows: 0,
            columns,
            parts: Vec::new(),
        }
    }

    /// Records a committed part, replacing an earlier one of the same shard, and keeps `rows` in step.
    pub fn push_part(&mut self, part: PartInfo) {
        // A linear search: a manifest read from disk may not be sorted.
        if let Some(i) = self.parts.iter().position(|p| p.shard == part.shard) {
            self.rows = self.rows.saturating_sub(self.parts[i].rows) + part.rows;
            self.parts[i] = part;
        } else {
            self.rows += part.rows;
            let i = self.parts.partition_point(|p| p.shard < part.shard);
            self.parts.insert(i, part);
        }
    }
}

impl Manifest {
    /// An unfinished manifest with no tables yet, stamped with this chimera's version and the current time.
    pub fn new(
        model_digest: String,
        seed: u64,
        privacy: ManifestPrivacy,
        rows_per_part: u64,
    ) -> Self {
        // A clock before 1970 is a broken host, not a reason to fail the run.
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            complete: false,
            chimera_version: env!("CARGO_PKG_VERSION").to_string(),
            model_digest,
            seed,
            privacy,
            table: String::new(),
            rows_requested: 0,
            rows_per_part,
            tables: BTreeMap::new(),
            created_unix,
        }
    }

    /// Parses a `_manifest.json` read from `path` (display form, for messages), refusing unknown formats
    /// and manifests that name files chimera would not write.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Manifest, StorageError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|source| StorageError::Manifest {
                path: path.to_owned(),
                source,
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(StorageError::UnsupportedManifest {
                path: path.to_owned(),
                found: manifest.format,
            });
        }
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Pretty JSON with a trailing newline, after the same checks as [`Manifest::from_json`].
    pub(crate) fn to_json(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        self.validate(path)?;
        let mut json =
            serde_json::to_vec_pretty(self).map_err(|source| StorageError::Manifest {
                path: path.to_owned(),
                source,
            })?;
        json.push(b'\n');
        Ok(json)
    }

    /// Table names are folder names and parts sit at their committed paths, one per shard; a
    /// manifest that names anything else must never drive a clean-up.
    fn validate(&self, path: &str) -> Result<(), StorageError> {
        let invalid = |detail: String| StorageError::InvalidManifest {
            path: path.to_owned(),
            detail,
        };
        for (table, t) in &self.tables {
            validate_table_name(table).map_err(|e| invalid(e.to_string()))?;
            let mut shards = BTreeSet::new();
            for part in &t.parts {
                let expected = committed_part_path(table, part.shard);
                if part.path != expected {
                    return Err(invalid(format!(
                        "part {:?} of shard {} should be {expected:?}",
                        part.path, part.shard
                    )));
                }
                if !shards.insert(part.shard) {
                    return Err(invalid(format!(
                        "shard {} of table {table:?} is listed twice",
                        part.shard
                    )));
                }
            }
        }
        Ok(())
    }

    /// Rows across all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }

    /// Shards committed in every table (a shard is done only when all its tables are).
    pub fn committed_shards(&self) -> BTreeSet<u32> {
        let mut tables = self.tables.values();
        let Some(first) = tables.next() else {
            return BTreeSet::new();
        };
        let mut shards: BTreeSet<u32> = first.parts.iter().map(|p| p.shard).collect();
        for t in tables {
            let here: BTreeSet<u32> = t.parts.iter().map(|p| p.shard).collect();
            shards.retain(|s| here.contains(s));
        }
        shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn part(table: &str, shard: u32, attempt: u32, rows: u64) -> PartInfo {
        PartInfo {
            path: committed_part_path(table, shard),
            shard,
            attempt,
            rows,
            bytes: 100 + rows,
            sha256: format!("{attempt:02}").repeat(32),
        }
    }

    fn sample_manifest() -> Manifest {
        let mut m = Manifest::new(
            "ab".repeat(32),
            42,
            ManifestPrivacy {
                mode: PrivacyMode::Dp,
                epsilon: Some(1.5),
                delta: Some(1e-6),
                notes: vec!["synthetic exemplars only".into()],
            },
            1000,
        );
        m.table = "adult".into();
        m.rows_requested = 2007;
        let mut adult = ManifestTable::new(vec!["age".into(), "income".into()]);
        for shard in 0..2 {
            adult.push_part(part("adult", shard, 1, 1000));
        }
        m.tables.insert("adult".into(), adult);
        let mut notes = ManifestTable::new(vec!["text".into()]);
        notes.push_part(part("notes", 0, 0, 7));
        m.tables.insert("notes".into(), notes);
        m
    }

    #[test]
    fn json_round_trips_and_uses_lowercase_mode() -> TestResult {
        let m = sample_manifest();
        let json = m.to_json("mem")?;
        let text = String::from_utf8(json.clone())?;
        assert!(text.contains("\"mode\": \"dp\""), "{text}");
        assert!(
            text.contains("\n  \"format\": \"chimera-manifest/1\""),
            "{text}"
        );
        assert!(text.contains("\"complete\": false"), "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(Manifest::from_json(&json, "mem")?, m);

        let none = ManifestPrivacy {
            mode: PrivacyMode::None,
            epsilon: None,
            delta: None,
            notes: vec![],
        };
        let json = serde_json::to_string(&none)?;
        assert_eq!(
            json,
            r#"{"mode":"none","epsilon":null,"delta":null,"notes":[]}"#
        );
        Ok(())
    }

    #[test]
    fn push_part_replaces_the_same_shard_and_keeps_shards_sorted() {
        let mut t = ManifestTable::new(vec!["a".into()]);
        t.push_part(part("t", 2, 1, 10));
        t.push_part(part("t", 0, 1, 10));
        t.push_part(part("t", 1, 1, 10));
        assert_eq!(t.rows, 30);
        // A retry of shard 1 replaces its part rather than adding rows.
        t.push_part(part("t", 1, 4, 12));
        assert_eq!(t.rows, 32);
        let shards: Vec<(u32, u32)> = t.parts.iter().map(|p| (p.shard, p.attempt)).collect();
        assert_eq!(shards, [(0, 1), (1, 4), (2, 1)]);
    }

    #[test]
    fn total_rows_and_committed_shards() {
        let mut m = sample_manifest();
        assert_eq!(m.tables["adult"].rows, 2000);
        assert_eq!(m.total_rows(), 2007);
        // Shard 1 has no `notes` part yet, so only shard 0 is done.
        assert_eq!(m.committed_shards(), BTreeSet::from([0]));
        m.tables.remove("notes");
        assert_eq!(m.committed_shards(), BTreeSet::from([0, 1]));
        m.tables.clear();
        assert!(m.committed_shards().is_empty());
    }

    #[test]
    fn manifests_without_the_new_fields_still_read_as_finished() -> TestResult {
        // Written by chimera before progress manifests existed.
        let old = r#"{
          "format": "chimera-manifest/1",
          "chimera_version": "0.1.0",
          "model_digest": "cd",
          "seed": 3,
          "privacy": {"mode": "none", "epsilon": null, "delta": null},
          "tables": {"adult": {"rows": 5, "columns": ["a"], "parts": [
            {"path": "adult/part-00000.parquet", "shard": 0, "attempt": 1, "rows": 5, "bytes": 10, "sha256": "00"}
          ]}},
          "rows_per_part": 100,
          "created_unix": 1
        }"#;
        let m = Manifest::from_json(old.as_bytes(), "old")?;
        assert!(m.complete);
        assert_eq!((m.rows_requested, m.table.as_str()), (0, ""));
        assert_eq!(m.total_rows(), 5);
        Ok(())
    }

    #[test]
    fn from_json_refuses_other_formats_bad_json_and_foreign_paths() -> TestResult {
        let m = sample_manifest();
        let mut future = m.clone();
        future.format = "chimera-manifest/2".into();
        let err = Manifest::from_json(&serde_json::to_vec(&future)?, "/out/_manifest.json").err();
        assert!(
            matches!(&err, Some(StorageError::UnsupportedManifest { found, .. }) if found == "chimera-manifest/2"),
            "{err:?}"
        );

        let err = Manifest::from_json(b"{ not json", "/out/_manifest.json").err();
        assert!(
            matches!(&err, Some(StorageError::Manifest { path, .. }) if path == "/out/_manifest.json"),
            "{err:?}"
        );

        let mut outside = m.clone();
        let t = outside.tables.remove("adult").ok_or("adult")?;
        outside.tables.insert("../victim".into(), t);
        let err = Manifest::from_json(&serde_json::to_vec(&outside)?, "x").err();
        assert!(
            matches!(err, Some(StorageError::InvalidManifest { .. })),
            "{err:?}"
        );

        let mut elsewhere = m.clone();
        if let Some(t) = elsewhere.tables.get_mut("adult") {
            t.parts[0].path = "notes/part-00000.parquet".into();
        }
        let err = Manifest::from_json(&serde_json::to_vec(&elsewhere)?, "x").err();
        assert!(
            matches!(err, Some(StorageError::InvalidManifest { .. })),
            "{err:?}"
        );
        assert!(elsewhere.to_json("x").is_err());

        let mut twice = m;
        if let Some(t) = twice.tables.get_mut("adult") {
            let again = t.parts[0].clone();
            t.parts.push(again);
        }
        let err = Manifest::from_json(&serde_json::to_vec(&twice)?, "x").err();
        assert!(
            matches!(err, Some(StorageError::InvalidManifest { .. })),
            "{err:?}"
        );
        Ok(())
    }
}

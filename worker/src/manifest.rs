//! The run manifest: which committed shard attempts make up a finished output.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::output::{OutputError, PartInfo, read_file};

/// Format tag written into every manifest; readers refuse other formats.
pub const MANIFEST_FORMAT: &str = "chimera-manifest/1";

/// Everything a reader needs to know about a finished run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Version of chimera that wrote the run.
    pub chimera_version: String,
    /// SHA-256 hex of the model artifact the rows were sampled from.
    pub model_digest: String,
    /// Job seed; shard seeds derive from it.
    pub seed: u64,
    /// Privacy guarantee the output carries.
    pub privacy: ManifestPrivacy,
    /// Table name to its committed parts.
    pub tables: BTreeMap<String, ManifestTable>,
    /// Planned rows (or entities) per shard.
    pub rows_per_part: u64,
    /// Seconds since the Unix epoch when the manifest was created.
    pub created_unix: u64,
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
    /// Committed parts, one per shard.
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

    /// Adds a committed part and counts its rows.
    pub fn push_part(&mut self, part: PartInfo) {
        self.rows += part.rows;
        self.parts.push(part);
    }
}

impl Manifest {
    /// A manifest with no tables yet, stamped with this chimera's version and the current time.
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
            chimera_version: env!("CARGO_PKG_VERSION").to_string(),
            model_digest,
            seed,
            privacy,
            tables: BTreeMap::new(),
            rows_per_part,
            created_unix,
        }
    }

    /// Reads and parses a `_manifest.json`, refusing unknown formats.
    pub fn load(path: &Path) -> Result<Manifest, OutputError> {
        let bytes = read_file(path)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| OutputError::Manifest {
                path: path.to_path_buf(),
                source,
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(OutputError::UnsupportedManifest {
                path: path.to_path_buf(),
                found: manifest.format,
            });
        }
        Ok(manifest)
    }

    /// Rows across all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.values().map(|t| t.rows).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

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
        let mut adult = ManifestTable::new(vec!["age".into(), "income".into()]);
        for shard in 0..2 {
            adult.push_part(PartInfo {
                path: format!("adult/part-{shard:05}.parquet"),
                shard,
                attempt: 1,
                rows: 1000,
                bytes: 12345,
                sha256: "00".repeat(32),
            });
        }
        m.tables.insert("adult".into(), adult);
        let mut notes = ManifestTable::new(vec!["text".into()]);
        notes.push_part(PartInfo {
            path: "notes/part-00000.parquet".into(),
            shard: 0,
            attempt: 0,
            rows: 7,
            bytes: 99,
            sha256: "11".repeat(32),
        });
        m.tables.insert("notes".into(), notes);
        m
    }

    #[test]
    fn json_round_trips_and_uses_lowercase_mode() -> TestResult {
        let m = sample_manifest();
        let json = serde_json::to_string_pretty(&m)?;
        assert!(json.contains("\"mode\": \"dp\""), "{json}");
        assert!(
            json.contains("\"format\": \"chimera-manifest/1\""),
            "{json}"
        );
        let back: Manifest = serde_json::from_str(&json)?;
        assert_eq!(back, m);

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
    fn total_rows_sums_tables() {
        let m = sample_manifest();
        assert_eq!(m.tables["adult"].rows, 2000);
        assert_eq!(m.total_rows(), 2007);
    }

    #[test]
    fn load_reads_file_and_refuses_other_formats() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("_manifest.json");
        let m = sample_manifest();
        std::fs::write(&path, serde_json::to_vec_pretty(&m)?)?;
        assert_eq!(Manifest::load(&path)?, m);

        let mut future = m.clone();
        future.format = "chimera-manifest/2".into();
        std::fs::write(&path, serde_json::to_vec(&future)?)?;
        let err = Manifest::load(&path).err();
        assert!(
            matches!(&err, Some(OutputError::UnsupportedManifest { found, .. }) if found == "chimera-manifest/2"),
            "{err:?}"
        );

        std::fs::write(&path, b"{ not json")?;
        let err = Manifest::load(&path).err();
        assert!(
            matches!(&err, Some(OutputError::Manifest { path: p, .. }) if p == &path),
            "{err:?}"
        );

        let missing = dir.path().join("nope.json");
        let err = Manifest::load(&missing).err();
        assert!(
            matches!(&err, Some(OutputError::Io { path: p, .. }) if p == &missing),
            "{err:?}"
        );
        Ok(())
    }
}

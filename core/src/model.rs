//! The model artifact: everything `sample` needs, with the privacy ledger and fit settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bayesnet::BayesNet;
use crate::domain::Encoding;
use crate::error::{CoreError, Result};
use crate::privacy::{Ledger, PrivacyMode};
use crate::schema::{ColumnSchema, Role};

/// Format tag of model files this version reads and writes.
pub const MODEL_FORMAT: &str = "chimera-model/1";

/// One column of the synthesised table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnModel {
    pub schema: ColumnSchema,
    pub role: Role,
    /// Why the role was chosen (inferred or declared).
    pub reason: String,
    /// The code domain, for columns in the network.
    pub encoding: Option<Encoding>,
    /// An identifier's format (learnt, or the spec's `pattern`); fresh values are written in
    /// it. None: 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::idformat::IdFormat>,
}

/// What the model promises about privacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPrivacy {
    pub mode: PrivacyMode,
    pub ledger: Option<Ledger>,
    /// True when the DP noise came from a user-given seed (reproducible, for testing only:
    /// whoever knows that seed can remove the noise).
    pub noise_seeded: bool,
    pub notes: Vec<String>,
}

/// Settings the fit used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSettingsRecord {
    pub max_parents: usize,
    pub bins: usize,
    pub max_categories: usize,
    pub max_cells: f64,
    pub search_rows: usize,
    pub rows_in_search: usize,
}

/// Where the LLM's prompts take their example rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exemplars {
    /// Earlier synthetic rows of the same shard: no real record reaches a prompt (the default).
    Synthetic,
    /// No example rows, only the instruction and the row's values.
    None,
    /// The k nearest real rows (HARMONIC): voids the DP guarantee, and the manifest says so.
    KnnReal,
}

/// Which cells of a text column the LLM writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FillScope {
    /// Where the network drew the `other` code (the long tail); frequent values stay as drawn.
    Other,
    /// Every non-null cell.
    All,
}

/// How the LLM fills the text columns, recorded in the model so every worker does the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmFill {
    /// File name of the language model (each worker loads its own copy).
    pub model: String,
    pub exemplars: Exemplars,
    pub scope: FillScope,
    /// Instruction template overriding the default (`{table}` and `{columns}` are replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// Per text column: what constrains the values the LLM writes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, TextRules>,
}

/// Constraints and hints for the values an LLM writes in one text column (from the spec).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A fitted model of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub chimera_version: String,
    pub table: String,
    /// Rows in the input (a noisy count under DP).
    pub rows: f64,
    pub columns: Vec<ColumnModel>,
    /// Column index of each network attribute.
    pub attributes: Vec<usize>,
    pub network: BayesNet,
    pub privacy: ModelPrivacy,
    pub settings: FitSettingsRecord,
    /// How an LLM fills the text columns; None when the model has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmFill>,
}

impl Model {
    /// Columns the LLM writes: text columns in the network.
    pub fn llm_columns(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.role == Role::Text && c.encoding.is_some())
            .map(|(i, _)| i)
            .collect()
    }
}

impl Model {
    /// Canonical bytes (JSON) of the model.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| CoreError::Model(e.to_string()))
    }

    /// Parses a model file, checking its format tag.
    pub fn from_json(bytes: &[u8]) -> Result<Model> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::Model(format!("not a chimera model (invalid JSON: {e})")))?;
        let format = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != MODEL_FORMAT {
            return Err(CoreError::Model(format!(
                "unsupported model format `{format}`; this chimera reads `{MODEL_FORMAT}`"
            )));
        }
        let m: Model = serde_json::from_value(v).map_err(|e| CoreError::Model(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// SHA-256 (hex) of the canonical bytes.
    pub fn digest(&self) -> Result<String> {
        let bytes = self.to_json()?;
        Ok(hex(&Sha256::digest(&bytes)))
    }

    /// Structural consistency: every attribute has an encoding and a node, parents come first.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::Model(m));
        if self.network.nodes.len() != self.attributes.len() {
            return bad("network and attribute list disagree".into());
        }
        let mut placed = vec![false; self.attributes.len()];
        for n in &self.network.nodes {
            let Some(&col) = self.attributes.get(n.child) else {
                return bad(format!("node for unknown attribute {}", n.child));
            };
            let Some(enc) = self.columns.get(col).and_then(|c| c.encoding.as_ref()) else {
                return bad(format!("attribute {} has no encoding", n.child));
            };
            if enc.cardinality() != n.card {
                return bad(format!("attribute {} cardinality mismatch", n.child));
            }
            if n.parents
                .iter()
                .any(|&p| !placed.get(p).copied().unwrap_or(false))
            {
                return bad(format!("attribute {} sampled before its parents", n.child));
            }
            let configs: usize = n.parent_cards.iter().product();
            if n.probs.len() != configs * n.card {
                return bad(format!("attribute {} table has the wrong size", n.child));
            }
            placed[n.child] = true;
        }
        Ok(())
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

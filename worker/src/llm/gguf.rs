//! GGUF metadata access: typed look-ups whose errors name the file and the key.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

/// Label used in errors for metadata that was not read from a file.
pub const IN_MEMORY: &str = "<in-memory GGUF>";

/// Why GGUF metadata could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened.
    #[error("cannot open GGUF file {}: {source}", file.display())]
    Open {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a readable GGUF file.
    #[error("cannot read GGUF file {}: {source}", file.display())]
    Parse {
        file: PathBuf,
        source: candle_core::Error,
    },
    /// A required metadata key is absent.
    #[error("{}: GGUF metadata has no `{key}`", file.display())]
    MissingKey { file: PathBuf, key: String },
    /// A metadata key holds a value of the wrong type or range.
    #[error("{}: GGUF metadata `{key}` is invalid: {reason}", file.display())]
    BadKey {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// Reads the header, metadata and tensor index of a GGUF file (not the tensor data).
pub fn read_content(path: &Path) -> Result<Content, GgufError> {
    let file = File::open(path).map_err(|source| GgufError::Open {
        file: path.to_path_buf(),
        source,
    })?;
    // Buffered: the metadata is tens of thousands of small length-prefixed strings.
    Content::read(&mut BufReader::new(file)).map_err(|source| GgufError::Parse {
        file: path.to_path_buf(),
        source,
    })
}

/// Typed view of a GGUF file's metadata; `file` only labels errors.
#[derive(Debug, Clone, Copy)]
pub struct GgufMetadata<'a> {
    content: &'a Content,
    file: &'a Path,
}

impl<'a> GgufMetadata<'a> {
    /// Wraps parsed content; `file` names it in errors.
    pub fn new(content: &'a Content, file: &'a Path) -> Self {
        Self { content, file }
    }

    /// The file these metadata came from (or [`IN_MEMORY`]).
    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.content.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
        })
    }

    /// An error saying `key` is invalid because of `reason`.
    pub fn bad(&self, key: &str, reason: impl Into<String>) -> GgufError {
        GgufError::BadKey {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// A required string.
    pub fn string(&self, key: &str) -> Result<&'a str, GgufError> {
        as_str(self.required(key)?).ok_or_else(|| self.bad(key, "not a string"))
    }

    /// An optional string; present but not a string is an error.
    pub fn opt_string(&self, key: &str) -> Result<Option<&'a str>, GgufError> {
        self.get(key)
            .map(|v| as_str(v).ok_or_else(|| self.bad(key, "not a string")))
            .transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get(key)
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                other => Err(self.bad(key, format!("not a bool ({:?})", other.value_type()))),
            })
            .transpose()
    }

    /// An optional non-negative integer that fits in `u32` (token ids).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get(key)
            .map(|v| {
                let n = as_i64(v).ok_or_else(|| self.bad(key, "not an integer"))?;
                u32::try_from(n).map_err(|_| self.bad(key, format!("{n} is not a valid id")))
            })
            .transpose()
    }

    /// A required array of strings.
    pub fn string_array(&self, key: &str) -> Result<Vec<&'a str>, GgufError> {
        let items = as_array(self.required(key)?).ok_or_else(|| self.bad(key, "not an array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                as_str(v).ok_or_else(|| self.bad(key, format!("item {i} is not a string")))
            })
            .collect()
    }

    /// A required array of integers.
    pub fn int_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let items = as_array(self.required(key)?).ok_or_else(|| self.bad(key, "not an array"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                as_i64(v).ok_or_else(|| self.bad(key, format!("item {i} is not an integer")))
            })
            .collect()
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn as_array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::U8(n) => n.into(),
        Value::I8(n) => n.into(),
        Value::U16(n) => n.into(),
        Value::I16(n) => n.into(),
        Value::U32(n) => n.into(),
        Value::I32(n) => n.into(),
        Value::U64(n) => i64::try_from(n).ok()?,
        Value::I64(n) => n,
        _ => return None,
    })
}

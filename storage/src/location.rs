//! Where the output lives: a local folder or a prefix in an object store.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use url::Url;

use crate::error::StorageError;

/// An output prefix: the store, the path inside it, and a display form that is safe to log.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    display: String,
    /// The folder, when the store is the local file system (for fsync).
    local_root: Option<PathBuf>,
}

impl fmt::Debug for Location {
    // A store's own Debug can print its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Plain path (relative or absolute; the folder is created when missing), file:// URL, or s3:// gs:// az:// (etc.) URL.
    ///
    /// Store options come from the `AWS_*`, `GOOGLE_*` and `AZURE_*`
    /// environment variables, then `options` (which win).
    pub fn parse(
        url_or_path: &str,
        options: &[(String, String)],
    ) -> Result<Location, StorageError> {
        let input = url_or_path;
        if !looks_like_url(input) {
            if input.trim().is_empty() {
                return Err(StorageError::InvalidLocation {
                    location: String::new(),
                    detail: "empty path".into(),
                });
            }
            let path = std::path::absolute(input).map_err(|source| StorageError::Io {
                path: input.to_owned(),
                source,
            })?;
            return Location::local(path);
        }
        let display = redact_url(input);
        let invalid = |detail: String| StorageError::InvalidLocation {
            location: display.clone(),
            detail,
        };
        let url = Url::parse(input).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| invalid("not a local file URL".into()))?;
            return Location::local(path);
        }
        let env = std::env::vars().filter(|(key, _)| {
            key.starts_with("AWS_") || key.starts_with("GOOGLE_") || key.starts_with("AZURE_")
        });
        let all = env.chain(options.iter().cloned());
        let (store, prefix) = object_store::parse_url_opts(&url, all)
            .map_err(|e| invalid(scrub(&e.to_string(), input, &url, &display)))?;
        Ok(Location {
            store: Arc::from(store),
            prefix,
            display: display.trim_end_matches('/').to_owned(),
            local_root: None,
        })
    }

    /// A local folder, created when missing.
    fn local(path: PathBuf) -> Result<Location, StorageError> {
        // Drops a trailing separator and `.` components, so the display form is stable.
        let path: PathBuf = path.components().collect();
        let display = path.display().to_string();
        std::fs::create_dir_all(&path).map_err(|source| StorageError::Io {
            path: display.clone(),
            source,
        })?;
        // Cleanup removes folders emptied by a delete (attempt and table folders), never the root.
        let store = LocalFileSystem::new_with_prefix(&path)
            .map_err(|source| StorageError::Store {
                path: display.clone(),
                source,
            })?
            .with_automatic_cleanup(true);
        Ok(Location {
            store: Arc::new(store),
            prefix: Path::default(),
            display,
            local_root: Some(path),
        })
    }

    /// The path or URL without credentials, query string or user info; safe to log.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The object store the output lives in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store path of `relative` (`/`-separated, relative to the output root).
    pub fn object_path(&self, relative: &str) -> Path {
        self.prefix
            .parts()
            .chain(
                relative
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(PathPart::from),
            )
            .collect()
    }

    /// The store path relative to the output root, or `None` when it lies outside it.
    pub(crate) fn relative(&self, path: &Path) -> Option<Vec<String>> {
        path.prefix_match(&self.prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect())
    }

    /// `relative` in display form, for messages.
    pub(crate) fn display_of(&self, relative: &str) -> String {
        format!("{}/{relative}", self.display.trim_end_matches('/'))
    }

    /// The local folder, when the output is on the local file system.
    pub(crate) fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }
}

/// `scheme://...` where the scheme is plain letters, digits or `+`.
fn looks_like_url(input: &str) -> bool {
    input.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

/// The URL without user info, query string or fragment, where credentials (SAS tokens, keys) may sit.
fn redact_url(input: &str) -> String {
    let without_query = input.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

/// Replaces every form of the raw URL and its user info in an error message.
fn scrub(message: &str, input: &str, url: &Url, display: &str) -> String {
    let mut text = message
        .replace(input, display)
        .replace(url.as_str(), display);
    for secret in [url.password().unwrap_or_default(), url.username()] {
        if !secret.is_empty() {
            text = text.replace(secret, "***");
        }
    }
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        text = text.replace(query, "***");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn plain_paths_and_file_urls_are_local_folders_created_when_missing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let nested = dir.path().join("a/b c/out");
        let loc = Location::parse(nested.to_str().ok_or("utf-8")?, &[])?;
        assert!(nested.is_dir());
        assert_eq!(loc.display(), nested.display().to_string());
        assert_eq!(loc.local_root(), Some(nested.as_path()));

        let url = Url::from_directory_path(dir.path().join("via url")).map_err(|()| "url")?;
        let loc = Location::parse(url.as_str(), &[])?;
        assert!(dir.path().join("via url").is_dir());
        assert!(loc.display().ends_with("via url"), "{}", loc.display());

        // Relative paths are made absolute (`.` is the crate folder, which exists).
        let relative = Location::parse(".", &[])?;
        assert!(FsPath::new(relative.display()).is_absolute());
        Ok(())
    }

    #[test]
    fn object_store_urls_keep_their_prefix_and_hide_credentials() -> TestResult {
        let options = vec![
            ("aws_endpoint".to_owned(), "http://127.0.0.1:9".to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
        ];
        let loc = Location::parse("s3://bucket/runs/one/", &options)?;
        assert_eq!(loc.display(), "s3://bucket/runs/one");
        assert_eq!(
            loc.object_path("adult/part-00000.parquet").as_ref(),
            "runs/one/adult/part-00000.parquet"
        );
        assert!(format!("{loc:?}").contains("s3://bucket/runs/one"));

        let loc = Location::parse(
            "s3://AKIDSECRET:hunter2@bucket/out?token=abc#frag",
            &options,
        )?;
        assert_eq!(loc.display(), "s3://bucket/out");
        assert!(!format!("{loc:?}").contains("hunter2"));

        let loc = Location::parse("gs://bucket/out", &[])?;
        assert_eq!(loc.display(), "gs://bucket/out");
        let loc = Location::parse(
            "az://container/out",
            &[("azure_storage_account_name".to_owned(), "acct".to_owned())],
        )?;
        assert_eq!(loc.object_path("_SUCCESS").as_ref(), "out/_SUCCESS");
        Ok(())
    }

    #[test]
    fn bad_urls_are_refused_without_leaking_secrets() {
        for input in [
            "nosuch://user:s3cr3t@x/y?sig=t0ken",
            "s3://user:s3cr3t@/?sig=t0ken",
            "",
        ] {
            let err = Location::parse(input, &[]).err();
            assert!(
                matches!(err, Some(StorageError::InvalidLocation { .. })),
                "{input}: {err:?}"
            );
            let text = format!(
                "{} {:?}",
                err.as_ref().map(ToString::to_string).unwrap_or_default(),
                err
            );
            assert!(
                !text.contains("s3cr3t") && !text.contains("t0ken"),
                "{text}"
            );
        }
    }

    #[test]
    fn redaction_drops_userinfo_query_and_fragment() {
        assert_eq!(redact_url("s3://k:s@b/p?x=1"), "s3://b/p");
        assert_eq!(
            redact_url("abfss://container@acct.dfs.core.windows.net/dir/x"),
            "abfss://acct.dfs.core.windows.net/dir/x"
        );
        assert_eq!(
            redact_url("https://acct.blob.core.windows.net/c/p?sv=1&sig=abc"),
            "https://acct.blob.core.windows.net/c/p"
        );
        assert_eq!(redact_url("gs://b/a@b/c"), "gs://b/a@b/c");
    }
}

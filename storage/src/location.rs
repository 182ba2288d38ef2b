//! Where the output lives: a local folder or a prefix in an object store.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use crate::error::StorageError;

/// chimera's store option: how long object-store calls are retried, from the first try
/// (`30s`, `2m`, `500ms`, or plain seconds).
pub const RETRY_TIMEOUT_OPTION: &str = "retry_timeout";
/// chimera's store option: how many times one object-store call is retried.
pub const MAX_RETRIES_OPTION: &str = "max_retries";
/// Default of [`RETRY_TIMEOUT_OPTION`] (object_store's own is 3 minutes).
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`MAX_RETRIES_OPTION`] (object_store's own is 10).
pub const DEFAULT_MAX_RETRIES: usize = 5;
/// Connect timeout of object-store clients unless the options or environment give one.
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";

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
    /// environment variables, then `options` (which win). Among `options`, chimera's own
    /// [`RETRY_TIMEOUT_OPTION`] and [`MAX_RETRIES_OPTION`] bound object_store's retries (default
    /// [`DEFAULT_RETRY_TIMEOUT`] and [`DEFAULT_MAX_RETRIES`]), and S3, GCS and Azure clients give up
    /// connecting after 5 s unless a `connect_timeout` is given. An option no object store knows is
    /// an error naming it; one of another store (`google_*` for an s3:// URL) is left unused, as the
    /// same options may serve an input elsewhere. Local outputs use no option, but a bad value of
    /// chimera's own is refused there too.
    pub fn parse(
        url_or_path: &str,
        options: &[(String, String)],
    ) -> Result<Location, StorageError> {
        let input = url_or_path;
        let (retry, store_options) =
            split_options(options).map_err(|detail| StorageError::InvalidLocation {
                location: redact_url(input),
                detail,
            })?;
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
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| {
                key.starts_with("AWS_") || key.starts_with("GOOGLE_") || key.starts_with("AZURE_")
            })
            .collect();
        let scrubbed =
            |e: object_store::Error| invalid(scrub(&e.to_string(), input, &url, &display));
        // The store kind and the path inside it, as object_store reads them from this URL.
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| scrubbed(e.into()))?;
        let prefix = Path::parse(path.as_ref()).map_err(|e| scrubbed(e.into()))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => {
                cloud_store::<AmazonS3Builder>(&url, &env, &store_options, &retry)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                cloud_store::<GoogleCloudStorageBuilder>(&url, &env, &store_options, &retry)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                cloud_store::<MicrosoftAzureBuilder>(&url, &env, &store_options, &retry)
            }
            _ => {
                let all = env.into_iter().chain(store_options);
                object_store::parse_url_opts(&url, all)
                    .map(|(store, _)| Arc::from(store))
                    .map_err(BuildError::Store)
            }
        }
        .map_err(|e| match e {
            BuildError::Store(e) => scrubbed(e),
            BuildError::UnknownOption(key) => invalid(format!(
                "unknown storage option `{key}` (not an option of any object store, nor {RETRY_TIMEOUT_OPTION} or {MAX_RETRIES_OPTION})"
            )),
        })?;
        Ok(Location {
            store,
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
        // No automatic cleanup: a delete that removes the folder it emptied races a worker
        // creating a file in it (object_store's create-folder-then-open is not atomic), so
        // `Output` removes emptied folders itself once no worker writes.
        let store =
            LocalFileSystem::new_with_prefix(&path).map_err(|source| StorageError::Store {
                path: display.clone(),
                source,
            })?;
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

/// How object-store calls are retried: chimera's bound, tighter than object_store's default.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RetrySettings {
    retry_timeout: Duration,
    max_retries: usize,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

impl RetrySettings {
    fn config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// Takes chimera's own options out of `options`: the retry settings and the options left for the
/// store (keys lower-cased, as object_store reads them). A bad value is an error naming the option.
fn split_options(
    options: &[(String, String)],
) -> Result<(RetrySettings, Vec<(String, String)>), String> {
    let mut retry = RetrySettings::default();
    let mut rest = Vec::with_capacity(options.len());
    for (key, value) in options {
        let key = key.trim().to_ascii_lowercase();
        match key.as_str() {
            RETRY_TIMEOUT_OPTION => {
                retry.retry_timeout = parse_duration(value).ok_or_else(|| {
                    format!(
                        "storage option {RETRY_TIMEOUT_OPTION} must be a duration such as 30s, 2m, 500ms or a number of seconds, got `{value}`"
                    )
                })?;
            }
            MAX_RETRIES_OPTION => {
                retry.max_retries = value.trim().parse().map_err(|_| {
                    format!(
                        "storage option {MAX_RETRIES_OPTION} must be a whole number (0 for no retries), got `{value}`"
                    )
                })?;
            }
            _ => rest.push((key, value.clone())),
        }
    }
    Ok((retry, rest))
}

/// `500ms`, `30s`, `2m`, `1h`, or plain (possibly fractional) seconds; not negative.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let number: f64 = number.trim_end().parse().ok()?;
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    if number.is_sign_negative() {
        return None;
    }
    Duration::try_from_secs_f64(number * scale).ok()
}

/// Why a cloud store could not be built.
enum BuildError {
    Store(object_store::Error),
    /// An explicit option that no object store knows (a typo, most likely).
    UnknownOption(String),
}

/// The builder of an S3, GCS or Azure store, configured the same way for each.
trait CloudBuilder: Sized {
    type Key: FromStr;
    fn for_url(url: &str) -> Self;
    fn config(self, key: Self::Key, value: String) -> Self;
    fn connect_timeout() -> Self::Key;
    fn retry(self, retry: RetryConfig) -> Self;
    fn build_store(self) -> object_store::Result<Arc<dyn ObjectStore>>;
}

macro_rules! cloud_builder {
    ($builder:ty, $key:ty) => {
        impl CloudBuilder for $builder {
            type Key = $key;
            fn for_url(url: &str) -> Self {
                <$builder>::new().with_url(url)
            }
            fn config(self, key: $key, value: String) -> Self {
                self.with_config(key, value)
            }
            fn connect_timeout() -> $key {
                <$key>::Client(ClientConfigKey::ConnectTimeout)
            }
            fn retry(self, retry: RetryConfig) -> Self {
                self.with_retry(retry)
            }
            fn build_store(self) -> object_store::Result<Arc<dyn ObjectStore>> {
                Ok(Arc::new(self.build()?))
            }
        }
    };
}

cloud_builder!(AmazonS3Builder, AmazonS3ConfigKey);
cloud_builder!(GoogleCloudStorageBuilder, GoogleConfigKey);
cloud_builder!(MicrosoftAzureBuilder, AzureConfigKey);

/// Whether some object store (S3, GCS, Azure, or any HTTP client) takes `key`.
fn is_store_option(key: &str) -> bool {
    AmazonS3ConfigKey::from_str(key).is_ok()
        || GoogleConfigKey::from_str(key).is_ok()
        || AzureConfigKey::from_str(key).is_ok()
}

/// The store for `url`: the connect-timeout default, then the environment, then `options`
/// (unknown environment variables are skipped, as object_store does), and the retry bound.
fn cloud_store<B: CloudBuilder>(
    url: &Url,
    env: &[(String, String)],
    options: &[(String, String)],
    retry: &RetrySettings,
) -> Result<Arc<dyn ObjectStore>, BuildError> {
    let mut builder =
        B::for_url(url.as_str()).config(B::connect_timeout(), DEFAULT_CONNECT_TIMEOUT.into());
    for (key, value) in env {
        if let Ok(key) = B::Key::from_str(&key.to_ascii_lowercase()) {
            builder = builder.config(key, value.clone());
        }
    }
    for (key, value) in options {
        match B::Key::from_str(key) {
            Ok(k) => builder = builder.config(k, value.clone()),
            Err(_) if is_store_option(key) => {
                tracing::debug!(option = %key, url = %redact_url(url.as_str()), "storage option of another object store left unused");
            }
            Err(_) => return Err(BuildError::UnknownOption(key.clone())),
        }
    }
    builder
        .retry(retry.config())
        .build_store()
        .map_err(BuildError::Store)
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

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Options of an S3 store on a loopback port where nothing listens.
    fn unreachable_s3(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut options = opts(&[
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "hunter2-secret"),
            ("aws_region", "us-east-1"),
        ]);
        options.extend(opts(extra));
        options
    }

    #[test]
    fn durations_are_written_with_a_unit_or_as_seconds() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("500ms", Duration::from_millis(500)),
            ("1h", Duration::from_secs(3600)),
            ("7", Duration::from_secs(7)),
            ("1.5", Duration::from_millis(1500)),
            (" 0.25s ", Duration::from_millis(250)),
            ("0", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Some(expected), "{text:?}");
        }
        for bad in ["", "s", "soon", "-1s", "10x", "1e3", "NaN", "inf", "3 days"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_options_have_defaults_and_are_not_passed_to_the_store() -> TestResult {
        let (retry, rest) = split_options(&opts(&[("aws_region", "eu-west-1")]))?;
        assert_eq!(retry, RetrySettings::default());
        assert_eq!(retry.retry_timeout, Duration::from_secs(60));
        assert_eq!(retry.max_retries, 5);
        assert_eq!(rest, opts(&[("aws_region", "eu-west-1")]));

        let (retry, rest) = split_options(&opts(&[
            ("retry_timeout", "2m"),
            ("AWS_Region", "eu-west-1"),
            ("MAX_RETRIES", "0"),
        ]))?;
        assert_eq!(
            retry,
            RetrySettings {
                retry_timeout: Duration::from_secs(120),
                max_retries: 0,
            }
        );
        assert_eq!(rest, opts(&[("aws_region", "eu-west-1")]));
        let config = retry.config();
        assert_eq!(config.max_retries, 0);
        assert_eq!(config.retry_timeout, Duration::from_secs(120));

        // A store built with them (object_store would not know these keys).
        let loc = Location::parse(
            "s3://bucket/out",
            &unreachable_s3(&[("retry_timeout", "3s"), ("max_retries", "2")]),
        )?;
        assert_eq!(loc.display(), "s3://bucket/out");
        Location::parse(
            "gs://bucket/out",
            &opts(&[("retry_timeout", "500ms"), ("connect_timeout", "1s")]),
        )?;
        Location::parse(
            "az://container/out",
            &opts(&[("azure_storage_account_name", "acct"), ("max_retries", "1")]),
        )?;
        Ok(())
    }

    #[test]
    fn bad_retry_values_name_the_option() {
        for (key, value, url) in [
            ("retry_timeout", "soon", "s3://bucket/out"),
            ("retry_timeout", "-3s", "gs://bucket/out"),
            ("max_retries", "-1", "s3://bucket/out"),
            ("max_retries", "many", "az://container/out"),
            // refused for a local folder too, though it has no use there
            ("retry_timeout", "10x", "out/local"),
        ] {
            let err = Location::parse(url, &opts(&[(key, value)])).err();
            assert!(
                matches!(err, Some(StorageError::InvalidLocation { .. })),
                "{key}={value}: {err:?}"
            );
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(key) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn unknown_options_are_refused_by_name_and_other_stores_options_are_left_unused() {
        let err = Location::parse(
            "s3://bucket/out",
            &unreachable_s3(&[("aws_secret_acess_key", "s3cr3t-value")]),
        )
        .err();
        let text = format!(
            "{} {err:?}",
            err.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(
            matches!(err, Some(StorageError::InvalidLocation { .. })),
            "{text}"
        );
        assert!(text.contains("`aws_secret_acess_key`"), "{text}");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("hunter2"),
            "{text}"
        );

        for url in ["gs://bucket/out", "az://container/out"] {
            let err = Location::parse(
                url,
                &opts(&[
                    ("azure_storage_account_name", "acct"),
                    ("no_such_option", "1"),
                ]),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(err.contains("`no_such_option`"), "{url}: {err}");
        }

        // One list of options may serve an input on GCS and an output on S3.
        let mixed = unreachable_s3(&[
            ("google_service_account", "/nonexistent/key.json"),
            ("azure_storage_account_name", "acct"),
        ]);
        assert!(Location::parse("s3://bucket/out", &mixed).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_store_gives_up_within_the_retry_bound() -> TestResult {
        use object_store::ObjectStoreExt as _;
        // Many retries allowed, but only for 1 s from the first try.
        let loc = Location::parse(
            "s3://bucket/out",
            &unreachable_s3(&[("retry_timeout", "1s"), ("max_retries", "1000")]),
        )?;
        let started = std::time::Instant::now();
        let result = loc.store().head(&loc.object_path("_SUCCESS")).await;
        assert!(result.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        // No retries at all: the first refusal is the answer.
        let loc = Location::parse("s3://bucket/out", &unreachable_s3(&[("max_retries", "0")]))?;
        let started = std::time::Instant::now();
        let err = loc
            .store()
            .head(&loc.object_path("_SUCCESS"))
            .await
            .err()
            .ok_or("reached a closed port")?;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        Ok(())
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

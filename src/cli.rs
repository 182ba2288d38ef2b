//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "chimera",
    version,
    about = "Private, faithful synthetic tables"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// No progress bars, warnings and errors only.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log format: `text` for people, `json` for pods (also CHIMERA_LOG_FORMAT).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CHIMERA_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Worker threads for counting, sampling and writing (default: all cores; also
    /// CHIMERA_THREADS), e.g. the pod's CPU limit.
    #[arg(long, global = true, env = "CHIMERA_THREADS")]
    pub threads: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a model and sample from it in one process.
    Run(RunArgs),
    /// Fit a model of a table and save it.
    Fit(FitArgs),
    /// Sample rows from a saved model.
    Sample(SampleArgs),
    /// Show a model: roles, domains, network edges, privacy budget spent.
    Inspect(InspectArgs),
    /// Guess a relational spec (keys, links, order) from several tables; prints YAML to edit.
    InferSpec(InferSpecArgs),
    /// Compare a synthetic table with the real one; prints JSON.
    Eval(EvalArgs),
    /// Split a table into train and test Parquet files (shuffled by seed).
    Split(SplitArgs),
    /// Fit a model and serve its sampling job to `chimera worker` processes over gRPC.
    Coordinator(CoordinatorArgs),
    /// Lease shards from a coordinator, sample them and write them to the output.
    Worker(WorkerArgs),
    /// Language-model tools: write a random-weight model, benchmark generation.
    #[command(subcommand)]
    Llm(LlmCommand),
}

#[derive(Subcommand, Debug)]
pub enum LlmCommand {
    /// Write a random-weight model with a small built-in tokenizer (for tests and speed
    /// benchmarks: the speed of a shape does not depend on its weights).
    Random(RandomArgs),
    /// Generated tokens per second at several batch sizes against one-at-a-time generation.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct RandomArgs {
    /// Architecture: llama, qwen2 or qwen3.
    #[arg(long, default_value = "llama")]
    pub arch: String,
    /// Shape: `tiny` (2 layers, hidden 64) or `1b` (TinyLlama-1.1B's shape; llama only).
    #[arg(long, default_value = "tiny")]
    pub shape: String,
    /// `gguf` (one file with tokenizer metadata) or `safetensors` (a Hugging Face folder).
    #[arg(long, default_value = "gguf")]
    pub format: String,
    /// Weight type: f32, f16, bf16 (safetensors), q8_0 or q4_1 (gguf).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Folder to write into.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A .gguf file or Hugging Face folder.
    #[arg(long)]
    pub llm: PathBuf,
    #[command(flatten)]
    pub llm_run: LlmRunArgs,
    /// Comma-separated batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batches: Vec<usize>,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 40)]
    pub prompt: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Table to read: CSV (optionally gzip) or Parquet, a local path or an object-store URL.
    /// Not used with a relational spec (its `tables:` name their inputs).
    #[arg(long)]
    pub input: Option<String>,
    /// CSV field separator (default: sniffed among , ; | and tab). Use `\t` for tab.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Whether the CSV has a header row (default: sniffed).
    #[arg(long)]
    pub header: Option<bool>,
    /// Comma-separated tokens read as missing (default: empty, ?, NA, N/A, NULL, null, None).
    #[arg(long, value_delimiter = ',')]
    pub null_tokens: Option<Vec<String>>,
    /// Comma-separated column names for a headerless CSV.
    #[arg(long, value_delimiter = ',')]
    pub column_names: Option<Vec<String>>,
    /// Object-store option KEY=VALUE for the input and the output (e.g.
    /// aws_endpoint=http://127.0.0.1:9000; retry_timeout=60s and max_retries=5 bound the retries
    /// of an unreachable store); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PrivacyArgs {
    /// Privacy budget epsilon of the whole fit (default 1).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "no_dp")]
    pub epsilon: Option<f64>,
    /// Delta of the (epsilon, delta) guarantee.
    #[arg(long, default_value_t = 1e-9, allow_hyphen_values = true)]
    pub delta: f64,
    /// Fit without differential privacy (recorded in the model and manifest).
    #[arg(long)]
    pub no_dp: bool,
    /// Seed the DP noise (reproducible fits for testing; anyone with the seed can remove the noise).
    #[arg(long)]
    pub noise_seed: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Spec file (YAML): column roles, public domains and bounds, fit settings.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Maximum parents per attribute (default 2 under DP, 3 without).
    #[arg(long)]
    pub max_parents: Option<usize>,
    /// Bins per numeric column (default 16 under DP, 24 without).
    #[arg(long)]
    pub bins: Option<usize>,
}

/// The LLM that writes text columns: what the fit records in the model.
#[derive(Args, Debug, Clone)]
pub struct LlmArgs {
    /// Language model that writes the text columns: a .gguf file (the tokenizer is rebuilt from
    /// its metadata) or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// Example rows in the LLM's prompts: `synthetic` (earlier synthetic rows; keeps the DP
    /// guarantee), `none`, or `knn-real` (nearest real rows; voids the DP guarantee).
    #[arg(long, value_enum, default_value = "synthetic")]
    pub exemplars: ExemplarsArg,
    /// Comma-separated columns the LLM writes (default: strings with too many distinct values
    /// to be categories).
    #[arg(long, value_delimiter = ',')]
    pub llm_columns: Vec<String>,
    /// Cells the LLM writes: `other` (where the network drew the long-tail code) or `all`.
    #[arg(long, value_enum, default_value = "other")]
    pub llm_fill: FillArg,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemplarsArg {
    Synthetic,
    None,
    KnnReal,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillArg {
    Other,
    All,
}

/// How a worker runs the LLM.
#[derive(Args, Debug, Clone)]
pub struct LlmRunArgs {
    /// Device of the LLM: `cpu`, or `cuda` (GPU 0; needs a build with the `cuda` feature).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Rows the LLM decodes together.
    #[arg(long, default_value_t = 32)]
    pub llm_batch: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output folder or object-store URL (s3://bucket/prefix/...): <table>/part-NNNNN.parquet,
    /// _model.json, _manifest.json, _SUCCESS.
    #[arg(long)]
    pub output: String,
    /// Number of rows to synthesise (entities, with a relational spec).
    #[arg(long, allow_hyphen_values = true)]
    pub rows: Option<String>,
    /// Seed of the sampling: the same model and seed give the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per shard (one Parquet part per shard; default 1,000,000, or 100,000 entities with
    /// a relational spec, whose child rows are many times more).
    #[arg(long)]
    pub shard_rows: Option<u64>,
    /// Replace a finished run in the output folder.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub llm_run: LlmRunArgs,
    /// In-process workers sampling shards in parallel (default 2; 1 when an LLM writes text
    /// columns, since one worker's batched forward already uses every core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Entities to synthesise with a relational spec (`tables:`): root rows with all their
    /// child rows (same as --rows).
    #[arg(long, conflicts_with = "rows")]
    pub entities: Option<String>,
}

#[derive(Args, Debug)]
pub struct FitArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Where to save the model (JSON).
    #[arg(long = "model")]
    pub model_path: PathBuf,
    /// Seed for the sample kept for the structure search on large tables.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A model saved by `chimera fit`.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Object-store option KEY=VALUE for the output (e.g. aws_endpoint=http://127.0.0.1:9000); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
    /// The language model for the model's text columns (.gguf file or Hugging Face folder).
    #[arg(long)]
    pub llm: Option<PathBuf>,
    #[command(flatten)]
    pub llm_run: LlmRunArgs,
    /// In-process workers sampling shards in parallel (default 2; 1 when an LLM writes text
    /// columns, since one worker's batched forward already uses every core).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub privacy: PrivacyArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "0.0.0.0:50051")]
    pub listen: std::net::SocketAddr,
    /// File holding the shared token every worker must present.
    #[arg(long, env = "CHIMERA_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds without a heartbeat after which a shard's lease lapses and it is leased again.
    #[arg(long, default_value_t = 30.0)]
    pub lease_timeout: f64,
    /// Serve /healthz and /readyz over HTTP on this address (e.g. 0.0.0.0:8080).
    #[arg(long)]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Seconds a finished coordinator keeps telling workers the job is done before it exits.
    #[arg(long, default_value_t = 5.0)]
    pub linger: f64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The coordinator's URL, e.g. http://coordinator:50051 (https:// for TLS).
    #[arg(long, env = "CHIMERA_COORDINATOR")]
    pub coordinator: String,
    /// File holding the shared token.
    #[arg(long, env = "CHIMERA_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// PEM CA certificate that signed the coordinator's certificate (default: system roots).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Server name to expect in the coordinator's certificate (default: the URL's host).
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Object-store option KEY=VALUE for the output; repeatable. Credentials come from the
    /// environment (AWS_*, GOOGLE_*, AZURE_*), never from the coordinator.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
    /// Serve /healthz and /readyz over HTTP on this address.
    #[arg(long)]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Seconds to keep trying to reach the coordinator (it may start after the worker).
    #[arg(long, default_value_t = 300.0)]
    pub connect_timeout: f64,
    /// Name in the coordinator's logs (default: $HOSTNAME).
    #[arg(long, env = "HOSTNAME")]
    pub name: Option<String>,
    /// Write what this worker did (shards, rows, lease latencies) as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The language model for the job's text columns (.gguf file or Hugging Face folder); the
    /// same model the job was fitted with.
    #[arg(long)]
    pub llm: Option<PathBuf>,
    /// The real table, for a job fitted with `--exemplars knn-real` (nearest real rows are
    /// pasted into prompts: no DP guarantee for the text).
    #[arg(long)]
    pub real_input: Option<String>,
    #[command(flatten)]
    pub llm_run: LlmRunArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A model saved by `chimera fit` (or an output folder's `_model.json`).
    pub model: PathBuf,
    /// Print the model summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The real (training) table: a file, a folder of Parquet parts, or a one-table chimera
    /// output folder.
    #[arg(long, required_unless_present = "spec")]
    pub real: Option<String>,
    /// Relational entities: the spec of the run (its tables' inputs are the real tables) and
    /// the run's output folder as --synthetic.
    #[arg(long, conflicts_with_all = ["real", "test", "target"])]
    pub spec: Option<PathBuf>,
    /// The synthetic table: a file, a folder of Parquet parts, or a chimera output folder.
    #[arg(long)]
    pub synthetic: String,
    /// A real held-out table for machine-learning efficacy.
    #[arg(long)]
    pub test: Option<String>,
    /// Target column for machine-learning efficacy: 2 to 50 classes (classified), or a number
    /// with more than two values (regressed).
    #[arg(long)]
    pub target: Option<String>,
    /// Write the metrics to this JSON file (otherwise to standard output, unless --report).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (charts, heatmaps, a verdict) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Title of the HTML report (default: "chimera eval: " and the synthetic path).
    #[arg(long)]
    pub title: Option<String>,
    /// Amalgam's LLM judge: a model (.gguf or Hugging Face folder) that scores synthetic and
    /// held-out real records (--test; with --spec, real entities) from 1 to 5 against three
    /// real training records (entities) each.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// HARMONIC's DLT: the model that wrote the synthetic text; its perplexity on real
    /// training, held-out and synthetic records (entities, with --spec).
    #[arg(long)]
    pub generator: Option<PathBuf>,
    /// Records of each table the judge and the generator score at most (a seeded sample).
    #[arg(long, default_value_t = 50)]
    pub judge_rows: usize,
    #[command(flatten)]
    pub llm_run: LlmRunArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct SplitArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Share of rows that go to the test file.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output Parquet file of the training rows.
    #[arg(long)]
    pub train: PathBuf,
    /// Output Parquet file of the test rows.
    #[arg(long)]
    pub test: PathBuf,
}

#[derive(Args, Debug)]
pub struct InferSpecArgs {
    /// A table (CSV or Parquet, path or URL); repeat for each table of the entity.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<String>,
    /// Object-store option KEY=VALUE; repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
}

//! The command line, parsed into plain data. Nothing here does I/O.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

mod store;

pub use store::{ExportFormat, RecipientsCommand, StoreArgs, StoreCommand};

/// hushbox fetches secrets from pluggable backends and delivers them to
/// programs as files on tmpfs, `_FILE` paths, or environment variables.
#[derive(Debug, Parser)]
#[command(name = "hushbox", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The manifest (default: $HUSHBOX_CONFIG, else hushbox.toml here or in
    /// the nearest parent directory).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The age identity file (overrides $HUSHBOX_IDENTITY and the manifest).
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace). Logs never
    /// contain secret values. $HUSHBOX_LOG takes a full filter instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// hushbox's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command with its secrets: files in a private tmpfs directory
    /// that is removed when it exits (for local development).
    Run(RunArgs),
    /// Container entrypoint: write secrets to the output directory (tmpfs),
    /// drop privileges, and run a command under a tini-grade supervisor.
    Exec(ExecArgs),
    /// Write the manifest's secrets to the output directory once.
    Inject(InjectArgs),
    /// Print one secret to stdout.
    Get(GetArgs),
    /// Validate the manifest and the plan; with --fetch, fetch every secret
    /// and report versions (never values).
    Check(CheckArgs),
    /// Print one rendered template to stdout, for debugging. Refuses a
    /// terminal unless --force.
    Render(RenderArgs),
    /// Exit 0 when the `--watch` of this manifest keeps every secret fresh,
    /// else 1 with the reason on stderr (for a Compose healthcheck).
    Health,
    /// Manage the age-encrypted store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Create an age identity file (mode 0600) and print its recipient.
    Keygen(KeygenArgs),
    /// Docker Swarm: turn the manifest's secrets into Swarm secrets.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Print the table of exit codes.
    ExitCodes,
    /// Print a shell completion script to stdout (bash, zsh or fish).
    Completions(CompletionsArgs),
    /// Print the manual page, hushbox.1 (roff), to stdout.
    Man,
}

/// `hushbox swarm …`.
#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Create a content-addressed Swarm secret for each secret with a
    /// `swarm` binding, roll its services onto it under the same target
    /// path, wait for them to converge, and remove the versions no service
    /// uses. Nothing changes when nothing did.
    Sync(SwarmSyncArgs),
}

/// `hushbox swarm sync`.
#[derive(Debug, Args)]
pub struct SwarmSyncArgs {
    /// The stack the services belong to: `NAME_` is prepended to service
    /// names (as `docker stack deploy` names them) and to secret names.
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
    /// Print what would be created, updated and removed; change nothing.
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
    /// Keep syncing: fetch again every `[watch].interval` (or the shortest
    /// `refresh` of a bound secret) and roll services onto values that
    /// changed, until SIGTERM or SIGINT.
    #[arg(long)]
    pub watch: bool,
}

/// `hushbox completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

/// The shells `hushbox completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Output formats of `check` and `store ls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people (the default).
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// The version line: the package version, the commit it was built from
/// (`unknown` outside a git checkout) and the backends compiled in.
pub fn version_text<'a>(backends: impl IntoIterator<Item = &'a str>) -> String {
    let mut backends: Vec<&str> = backends.into_iter().collect();
    backends.sort_unstable();
    format!(
        "{} (commit {}; backends: {})",
        env!("CARGO_PKG_VERSION"),
        env!("HUSHBOX_COMMIT"),
        backends.join(", ")
    )
}

/// The clap command with `version` as its version line: what `--version`,
/// the completions and the manual page are generated from.
pub fn command(version: String) -> clap::Command {
    Cli::command().version(version)
}

/// `hushbox run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write into the project's kept directory and leave it when the command
    /// ends, for what outlives it (`docker-compose up -d` mounts the files
    /// later, on every restart). The next `--keep` or `--discard` run of the
    /// project reuses it; `--discard` removes it.
    #[arg(long, conflicts_with = "discard")]
    pub keep: bool,
    /// Like --keep, then remove the kept directory when the command ends
    /// (`hushbox run --discard -- docker-compose down`).
    #[arg(long)]
    pub discard: bool,
    /// Keep the secrets fresh while the command runs: re-fetch on each
    /// secret's schedule, commit changes as new generations, fire on_change
    /// hooks, and keep a status file for `hushbox health`.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: serve Prometheus text (generation, last success,
    /// failures, staleness and expiry per secret; names only, never values)
    /// on this address, such as 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Let the program gain privileges through setuid binaries or file
    /// capabilities (sudo, ping…). By default it runs with NoNewPrivs set.
    #[arg(long)]
    pub allow_new_privileges: bool,
    /// Resolve this environment variable as a reference, whatever backend
    /// its scheme names (repeatable; `NAME` or a prefix `NAME*`). Adds to
    /// [env].resolve; without either, only variables whose scheme is an
    /// instance of [backends] are resolved.
    #[arg(long, value_name = "NAME")]
    pub resolve_env: Vec<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `hushbox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep the secrets fresh while the command runs: re-fetch on each
    /// secret's schedule, commit changes as new generations, fire on_change
    /// hooks, and keep a status file for `hushbox health`.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: serve Prometheus text (generation, last success,
    /// failures, staleness and expiry per secret; names only, never values)
    /// on this address, such as 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Run the command as this user: NAME or UID, optionally :GROUP or :GID
    /// (resolved from /etc/passwd and /etc/group). Files belong to this user
    /// unless [output] says otherwise.
    #[arg(long, short, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The output directory (overrides [output].dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Allow an output directory that is not on tmpfs or ramfs.
    #[arg(long)]
    pub allow_disk: bool,
    /// Let the program gain privileges through setuid binaries or file
    /// capabilities (sudo, ping…). By default it runs with NoNewPrivs set.
    #[arg(long)]
    pub allow_new_privileges: bool,
    /// Resolve this environment variable as a reference, whatever backend
    /// its scheme names (repeatable; `NAME` or a prefix `NAME*`). Adds to
    /// [env].resolve; without either, only variables whose scheme is an
    /// instance of [backends] are resolved.
    #[arg(long, value_name = "NAME")]
    pub resolve_env: Vec<String>,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `hushbox inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Stay running as a sidecar: keep the output directory fresh, run
    /// `exec` hooks on changes, and keep a status file for `hushbox health`.
    /// Ends on SIGTERM or SIGINT.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: serve Prometheus text (generation, last success,
    /// failures, staleness and expiry per secret; names only, never values)
    /// on this address, such as 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The output directory (overrides [output].dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Allow an output directory that is not on tmpfs or ramfs.
    #[arg(long)]
    pub allow_disk: bool,
}

/// `hushbox get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The reference, e.g. age://prod/db_password or file:///run/key.json#key.
    pub reference: String,
}

/// `hushbox check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also fetch every secret (values are never printed).
    #[arg(long)]
    pub fetch: bool,
    /// text, or json for scripts (names, references, versions and leases;
    /// never values).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `hushbox render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The template's name ([templates.NAME] in the manifest).
    pub name: String,
    /// Print to a terminal anyway.
    #[arg(long)]
    pub force: bool,
}

/// `hushbox keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the identity (default: $HUSHBOX_IDENTITY, else
    /// ~/.config/hushbox/identity.txt). Never overwrites.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_everything_after_the_double_dash() {
        let cli = Cli::try_parse_from(["hushbox", "run", "--", "sh", "-c", "echo --x"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["sh", "-c", "echo --x"]);
    }

    #[test]
    fn store_set_has_no_value_argument() {
        assert!(Cli::try_parse_from(["hushbox", "store", "set", "name", "value"]).is_err());
    }
}

//! `hushbox store …`: the age store's commands, parsed.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Options of every `hushbox store` command.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Which age backend of the manifest (default: the only one; without a
    /// manifest, the default store from $HUSHBOX_STORE, except that `init`
    /// and `import` in a project create ./secrets and a manifest naming it).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
}

/// `hushbox store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create a store: writes .age-recipients and the integrity manifest.
    Init {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// A recipient (age1… or an ssh public key); repeatable. Default:
        /// the recipient of your identity.
        #[arg(long, value_name = "RECIPIENT")]
        recipient: Vec<String>,
        /// Create a subtree with its own recipients instead.
        #[arg(long, value_name = "SUBDIR")]
        dir: Option<String>,
        /// Use the passage store ($HUSHBOX_STORE, else $PASSAGE_DIR, else
        /// ~/.passage/store) instead of creating ./secrets and hushbox.toml
        /// in a project without a manifest.
        #[arg(long, conflicts_with = "backend")]
        passage: bool,
    },
    /// Store a secret read from stdin, or from a no-echo prompt on a terminal.
    /// Never from the command line.
    Set {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The secret's name, e.g. prod/db_password.
        name: String,
        /// Keep the input byte for byte (by default one trailing newline is
        /// removed, as a prompt or `echo` adds one).
        #[arg(long)]
        raw: bool,
    },
    /// Print a secret to stdout.
    Get {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The secret's name.
        name: String,
    },
    /// List secret names (never values): a tree on a terminal (or with
    /// --tree), one name per line otherwise.
    Ls {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// Only names under this prefix.
        prefix: Option<String>,
        /// Draw a tree even when stdout is not a terminal.
        #[arg(long, conflicts_with = "format")]
        tree: bool,
        /// text, or json: a JSON array of names, for scripts.
        #[arg(long, value_enum)]
        format: Option<super::Format>,
    },
    /// Remove a secret.
    Rm {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The secret's name.
        name: String,
    },
    /// Rename a secret (re-encrypting it when the new name has other
    /// recipients).
    Mv {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The current name.
        from: String,
        /// The new name.
        to: String,
        /// Replace a secret that already has the new name.
        #[arg(short, long)]
        force: bool,
    },
    /// Edit a secret in $VISUAL or $EDITOR, in a private file on tmpfs that
    /// is wiped afterwards.
    Edit {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The secret's name (created if it does not exist).
        name: String,
        /// Keep what the editor leaves byte for byte (by default one
        /// trailing newline is removed, as most editors add one).
        #[arg(long)]
        raw: bool,
    },
    /// List, add or remove the recipients of the store or of a subtree.
    #[command(subcommand)]
    Recipients(RecipientsCommand),
    /// Re-encrypt the secrets whose recipients changed, and accept
    /// .age-recipients files changed by hand.
    Reencrypt {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// Only secrets under this prefix.
        prefix: Option<String>,
    },
    /// Import a .env file: every variable becomes a secret, and the manifest
    /// gains an entry that gives it to programs under the same name.
    Import {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The .env file (Docker Compose's env_file rules).
        file: PathBuf,
        /// Use the passage store ($HUSHBOX_STORE, else $PASSAGE_DIR, else
        /// ~/.passage/store) instead of the project's ./secrets in a
        /// project without a manifest.
        #[arg(long, conflicts_with_all = ["backend", "manifest"])]
        passage: bool,
        /// Store the secrets in this directory of the store, e.g. `dev`
        /// (`dev/KEY`).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// The manifest to add entries to (default: the one hushbox finds,
        /// else hushbox.toml here, created).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Overwrite, then remove, the .env file once everything is stored.
        #[arg(long)]
        delete: bool,
        /// Replace secrets that already exist.
        #[arg(short, long)]
        force: bool,
    },
    /// Print secrets in a form other tools read. Refuses a terminal unless
    /// --force.
    Export {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only secrets under this prefix (stripped from `env` names).
        prefix: Option<String>,
        /// Print to a terminal anyway.
        #[arg(long)]
        force: bool,
    },
    /// Check every secret against the store's integrity manifest.
    Verify {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// After a successful check, print the id of the store's integrity
        /// key on stdout: the value `integrity_key` (or
        /// HUSHBOX_INTEGRITY_KEY) pins in an image.
        #[arg(long)]
        print_key: bool,
    },
    /// Record the store as it is now in its integrity manifest, after
    /// reviewing a change made outside hushbox (by age, passage, a merge, a
    /// checkout of an older commit). Creates the manifest if there is none.
    Accept {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// Only these secrets (default: the whole store).
        names: Vec<String>,
    },
}

/// `hushbox store recipients …`.
#[derive(Debug, Subcommand)]
pub enum RecipientsCommand {
    /// Print the recipients that apply to the store or a subtree.
    Ls {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The subtree (default: the store's root).
        #[arg(long, value_name = "SUBDIR")]
        dir: Option<String>,
    },
    /// Add recipients (age1… or ssh public keys). Then run `store reencrypt`.
    Add {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The subtree whose .age-recipients to change (default: the root).
        #[arg(long, value_name = "SUBDIR")]
        dir: Option<String>,
        /// The recipients.
        #[arg(required = true, value_name = "RECIPIENT")]
        recipients: Vec<String>,
    },
    /// Remove recipients. Then run `store reencrypt`, and rotate the values
    /// they could read.
    Rm {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The subtree whose .age-recipients to change (default: the root).
        #[arg(long, value_name = "SUBDIR")]
        dir: Option<String>,
        /// The recipients.
        #[arg(required = true, value_name = "RECIPIENT")]
        recipients: Vec<String>,
    },
}

/// What `store export` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `NAME="value"` lines (Compose env_file rules; `store import` reads
    /// them back).
    Env,
    /// One JSON object, name → value.
    Json,
}

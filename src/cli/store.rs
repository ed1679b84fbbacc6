//! `hushbox store …`: the age store's commands, parsed.

use clap::{Args, Subcommand};

/// Options of every `hushbox store` command.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Which age backend of the manifest (default: the only one, else the
    /// default store from $HUSHBOX_STORE).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
}

/// `hushbox store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create a store: writes .age-recipients.
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
    /// List secret names (never values).
    Ls {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// Only names under this prefix.
        prefix: Option<String>,
    },
    /// Remove a secret.
    Rm {
        /// Common options.
        #[command(flatten)]
        store: StoreArgs,
        /// The secret's name.
        name: String,
    },
}

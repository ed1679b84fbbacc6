//! The first hour's conveniences: shell completions, the manual page, the
//! version line, machine-readable `check` and `store ls`, and quiet logs
//! for an AWS config file that does not exist.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{code, hushbox_command, require_tool, run_with_stdin, stderr, stdout};

/// The subcommands every completion script and the manual page must name.
const SUBCOMMANDS: &[&str] = &[
    "run",
    "exec",
    "inject",
    "get",
    "check",
    "store",
    "keygen",
    "exit-codes",
    "completions",
    "man",
];

/// A project directory with an identity and a store in `./secrets`.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(manifest: &str) -> Self {
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(project.dir.path().join("hushbox.toml"), manifest).unwrap();
        project
    }

    fn with_store() -> Self {
        let project =
            Self::new("version = 1\n[backends.age]\nkind = \"age\"\nstore = \"secrets\"\n");
        project.ok(&["keygen"], None);
        project.ok(&["store", "init"], None);
        project
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = hushbox_command(self.dir.path(), self.dir.path(), args);
        command.env("HUSHBOX_IDENTITY", self.dir.path().join("identity.txt"));
        command
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(self.command(args), stdin)
    }

    fn ok(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let output = self.run(args, stdin);
        assert_eq!(code(&output), 0, "hushbox {args:?}: {}", stderr(&output));
        output
    }
}

/// `hushbox ARGS` anywhere, with nothing in the environment.
fn hushbox(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    run_with_stdin(hushbox_command(dir.path(), dir.path(), args), None)
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", stdout(output)))
}

#[test]
fn bash_completions_parse_and_name_every_subcommand() {
    let output = hushbox(&["completions", "bash"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hushbox.bash");
    std::fs::write(&script, &output.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    let text = stdout(&output);
    for subcommand in SUBCOMMANDS {
        assert!(text.contains(subcommand), "{subcommand} missing:\n{text}");
    }
    assert!(text.contains("complete -F _hushbox"), "{text}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    for (shell, marker) in [("zsh", "#compdef hushbox"), ("fish", "complete -c hushbox")] {
        let output = hushbox(&["completions", shell]);
        assert_eq!(code(&output), 0, "{shell}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains(marker), "{shell}:\n{text}");
        for subcommand in SUBCOMMANDS {
            assert!(text.contains(subcommand), "{shell}: {subcommand} missing");
        }
    }
}

#[test]
fn completions_refuse_an_unknown_shell_as_a_usage_error() {
    let output = hushbox(&["completions", "tcsh"]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("bash, zsh, fish"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_manual_page_renders_with_man() {
    require_tool("man", "man-db");
    let output = hushbox(&["man"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("hushbox.1");
    std::fs::write(&page, &output.stdout).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(rendered.status.success(), "man -l: {}", stderr(&rendered));
    let text = stdout(&rendered);
    assert!(text.contains("hushbox"), "{text}");
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for subcommand in SUBCOMMANDS {
        assert!(text.contains(subcommand), "{subcommand} missing:\n{text}");
    }
}

#[test]
fn version_names_the_commit_and_the_backends() {
    let output = hushbox(&["--version"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("hushbox {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The binary was built from this checkout just now (build.rs asks git).
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| stdout(&output).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert!(text.contains(&format!("(commit {head};")), "{text}");
    assert!(
        text.contains("backends: age, aws, command, file, vault)"),
        "{text}"
    );
}

#[test]
fn check_json_without_fetch_lists_what_the_plan_knows() {
    let project = Project::new(
        "version = 1\n[secrets.db]\nref = \"file://db.json#password\"\nenv = \"DB_FILE\"\n\
         [secrets.api]\nref = \"file://api.txt\"\nenv_value = \"API_KEY\"\noptional = true\n",
    );
    let output = project.ok(&["check", "--format", "json"], None);
    let report = json(&output);
    assert_eq!(report["fetched"], false);
    assert_eq!(
        report["manifest"],
        project.dir.path().join("hushbox.toml").to_str().unwrap()
    );
    assert_eq!(report["output"]["dir"], "/run/secrets");
    assert_eq!(report["output"]["mode"], "0400");
    assert_eq!(report["backends"], serde_json::json!(["file"]));
    let secrets = report["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    let db = secrets.iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!(db["reference"], "file://db.json#password");
    assert_eq!(db["env_path"], "DB_FILE");
    assert_eq!(db["env_value"], serde_json::Value::Null);
    assert_eq!(db["optional"], false);
    // Nothing was fetched, so nothing fetched is claimed.
    assert!(db.get("status").is_none(), "{db}");
    let api = secrets.iter().find(|s| s["name"] == "api").unwrap();
    assert_eq!(api["env_value"], "API_KEY");
    assert_eq!(api["optional"], true);
}

#[test]
fn check_fetch_json_reports_status_and_versions_but_never_values() {
    let canary = "canary-7d1c0e5b-check-json";
    let project = Project::new(
        "version = 1\n[secrets.db]\nref = \"file://db.json#password\"\n\
         [secrets.gone]\nref = \"file://gone.txt\"\noptional = true\n",
    );
    std::fs::write(
        project.dir.path().join("db.json"),
        format!(r#"{{"password":"{canary}"}}"#),
    )
    .unwrap();
    let output = project.ok(&["check", "--fetch", "--format", "json"], None);
    assert!(!stdout(&output).contains(canary), "{}", stdout(&output));
    assert!(!stderr(&output).contains(canary), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["fetched"], true);
    let secrets = report["secrets"].as_array().unwrap();
    let db = secrets.iter().find(|s| s["name"] == "db").unwrap();
    assert_eq!(db["status"], "ok");
    assert_eq!(db["version"], serde_json::Value::Null);
    assert_eq!(db["lease"], serde_json::Value::Null);
    assert_eq!(db["expires_at"], serde_json::Value::Null);
    let gone = secrets.iter().find(|s| s["name"] == "gone").unwrap();
    assert_eq!(gone["status"], "missing");

    // A failed fetch is an error with its exit code, not a JSON report.
    std::fs::remove_file(project.dir.path().join("db.json")).unwrap();
    let output = project.run(&["check", "--fetch", "--format", "json"], None);
    assert_eq!(code(&output), 66, "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}

#[test]
fn check_refuses_an_unknown_format() {
    let project = Project::new("version = 1\n");
    let output = project.run(&["check", "--format", "yaml"], None);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
}

#[test]
fn store_ls_json_lists_names_never_values() {
    require_tool("age", "age");
    let canary = "canary-0b6f2a91-store-ls";
    let project = Project::with_store();
    project.ok(&["store", "set", "prod/db"], Some(canary.as_bytes()));
    project.ok(&["store", "set", "dev/api"], Some(canary.as_bytes()));
    let output = project.ok(&["store", "ls", "--format", "json"], None);
    assert!(!stdout(&output).contains(canary));
    let listing = json(&output);
    assert_eq!(listing["names"], serde_json::json!(["dev/api", "prod/db"]));
    let store = Path::new(listing["store"].as_str().unwrap());
    assert!(store.ends_with("secrets"), "{listing}");

    let output = project.ok(&["store", "ls", "prod/", "--format", "json"], None);
    assert_eq!(json(&output)["names"], serde_json::json!(["prod/db"]));

    // --format text is one name per line; --tree draws, so it excludes --format.
    let output = project.ok(&["store", "ls", "--format", "text"], None);
    assert_eq!(stdout(&output), "dev/api\nprod/db\n");
    let output = project.run(&["store", "ls", "--tree", "--format", "json"], None);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
}

/// `AWS_CONFIG_FILE` naming a file that does not exist is a normal setup
/// the SDK reads as empty: its warning is kept for debug output.
#[test]
fn a_missing_aws_config_file_is_not_warned_about_at_the_default_level() {
    // A closed port: the fetch fails at once, after the SDK read its config.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-config");
    let run = |extra: &[&str], log: Option<&str>| {
        let mut args = extra.to_vec();
        args.extend(["get", "aws://prod/api"]);
        let mut command = hushbox_command(dir.path(), dir.path(), &args);
        command
            .env("AWS_CONFIG_FILE", &missing)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &endpoint);
        if let Some(log) = log {
            command.env("HUSHBOX_LOG", log);
        }
        run_with_stdin(command, None)
    };
    let warning = "config file overridden via environment variable not found";

    let output = run(&[], None);
    assert_eq!(code(&output), 69, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot reach Secrets Manager"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(warning), "{}", stderr(&output));
    assert!(!stderr(&output).contains("WARN"), "{}", stderr(&output));

    // The SDK did say it, and debug output shows it (-vv, or HUSHBOX_LOG).
    for (extra, log) in [(&["-vv"][..], None), (&[][..], Some("debug"))] {
        let output = run(extra, log);
        assert_eq!(code(&output), 69, "{}", stderr(&output));
        assert!(stderr(&output).contains(warning), "{}", stderr(&output));
    }
}

/// `completions` and `man` read no manifest: a broken or untrusted one
/// (here group-writable, which every other command refuses) is no obstacle.
#[test]
fn completions_and_man_work_beside_a_manifest_other_commands_refuse() {
    use std::os::unix::fs::PermissionsExt;
    let project = Project::new("version = 1\n");
    let manifest = project.dir.path().join("hushbox.toml");
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o664)).unwrap();
    let output = project.run(&["check"], None);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    for args in [&["completions", "fish"][..], &["man"][..]] {
        let output = project.run(args, None);
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
}

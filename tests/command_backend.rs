//! The `command` backend through the binary: a store hushbox has no native
//! backend for, added with a few lines of manifest. The example plugin
//! (`examples/plugins/files.py`) serves a directory; `get` reads one secret,
//! `run` delivers a batch fetched by one plugin process; the plugin's own
//! variables stay out of the program's environment; mistakes get their
//! documented exit codes; the plugin's stderr never reaches hushbox's.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{code, hushbox_command, require_tool, run_with_stdin, stderr, stdout};

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/files.py")
}

struct Project {
    dir: tempfile::TempDir,
    store: PathBuf,
    log: PathBuf,
}

impl Project {
    /// A project whose manifest is `backend` (the `[backends.files]`
    /// section) followed by `rest`.
    fn new(backend: &str, rest: &str) -> Self {
        require_tool("python3", "python3");
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        fs::create_dir_all(store.join("prod")).unwrap();
        let manifest = format!("version = 1\n{backend}\n{rest}");
        fs::write(dir.path().join("hushbox.toml"), manifest).unwrap();
        let log = dir.path().join("starts.log");
        Self { dir, store, log }
    }

    fn seed(&self, path: &str, value: &[u8]) {
        fs::write(self.store.join(path), value).unwrap();
    }

    fn hushbox(&self, args: &[&str]) -> Output {
        run_with_stdin(self.command(args), None)
    }

    /// As [`Project::hushbox`], logging everything down to TRACE.
    fn hushbox_logged(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.env("HUSHBOX_LOG", "trace");
        run_with_stdin(command, None)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = hushbox_command(self.dir.path(), self.dir.path(), args);
        command
            .env("FILES_PLUGIN_ROOT", &self.store)
            .env("FILES_PLUGIN_LOG", &self.log);
        command
    }
}

/// The five lines a user writes.
fn json_backend() -> String {
    format!(
        "[backends.files]\nkind = \"command\"\nprotocol = \"json\"\ncommand = [\"python3\", {:?}, \"json\"]\nenv = [\"FILES_PLUGIN_*\"]\n",
        plugin().display().to_string()
    )
}

#[test]
fn a_store_without_a_native_backend_takes_five_lines_of_manifest() {
    let project = Project::new(
        &json_backend(),
        "[secrets.db]\nref = \"files://prod/db\"\nenv_value = \"DB\"\n\
         [secrets.api]\nref = \"files://prod/api.json#token\"\nenv_value = \"API_TOKEN\"\n\
         [secrets.cert]\nref = \"files://prod/cert\"\n",
    );
    project.seed("prod/db", b"db pass; $(id)");
    project.seed("prod/api.json", br#"{"token": "tok-123"}"#);
    project.seed("prod/cert", &[0xff, 0x00, 0xfe]);

    let output = project.hushbox(&["get", "files://prod/db"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(output.stdout, b"db pass; $(id)");

    fs::write(&project.log, "").unwrap();
    let output = project.hushbox(&["run", "--", "env"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let env = stdout(&output);
    assert!(env.lines().any(|line| line == "DB=db pass; $(id)"), "{env}");
    assert!(env.lines().any(|line| line == "API_TOKEN=tok-123"), "{env}");
    // The plugin's variables are its credentials: not the program's.
    assert!(!env.contains("FILES_PLUGIN_"), "{env}");
    assert_eq!(
        fs::read_to_string(&project.log).unwrap(),
        "start json\n",
        "one plugin process fetched the three secrets"
    );

    let output = project.hushbox(&["get", "files://prod/absent"]);
    assert_eq!(code(&output), 66, "{}", stderr(&output));
    assert!(stderr(&output).contains("files://prod/absent"));
}

#[test]
fn mistakes_get_their_exit_codes_and_stderr_stays_the_plugins() {
    let canary = hushbox_testkit::Canary::new();
    let script = format!(
        "echo 'failed reading {} for' \"$1\" >&2; exit 5",
        canary.value()
    );
    let backend = format!(
        "[backends.tool]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {script:?}, \"sh\", \"{{path}}\"]\n\
         [backends.slow]\nkind = \"command\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"200ms\"\n\
         [backends.big]\nkind = \"command\"\ncommand = [\"yes\"]\nmax_size = 100\n"
    );
    let project = Project::new(&backend, "");
    let output = project.hushbox_logged(&["get", "tool://x"]);
    assert_eq!(code(&output), 69, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("exited with code 5"),
        "{}",
        stderr(&output)
    );
    assert!(
        canary.forms_in(&output.stderr).is_empty(),
        "{}",
        stderr(&output)
    );
    assert!(canary.forms_in(&output.stdout).is_empty());
    assert!(
        stderr(&output).contains("the plugin finished"),
        "the trace logs were on: {}",
        stderr(&output)
    );

    let output = project.hushbox(&["get", "slow://x"]);
    assert_eq!(code(&output), 69, "{}", stderr(&output));
    let output = project.hushbox(&["get", "big://x"]);
    assert_eq!(code(&output), 65, "{}", stderr(&output));

    let field = Project::new(
        "[backends.az]\nkind = \"command\"\ncommand = [\"az\", \"--name\", \"{field}\"]\n",
        "[secrets.x]\nref = \"az://x\"\n",
    );
    let output = field.hushbox(&["check"]);
    assert_eq!(code(&output), 78, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("[backends.az]"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("`{field}`"), "{}", stderr(&output));
}

/// Plugins run during `exec --watch` rounds are children of the watcher's
/// thread, and the supervisor, which reaps the program and every orphan,
/// must leave them to the backend that waits for them: a plugin reaped by
/// the supervisor would fail its fetch ("cannot wait for the plugin") and
/// the new value would never arrive. Both protocols, one value each; the
/// program exits 0 once it reads both new values.
#[test]
fn exec_watch_rotates_plugin_secrets_the_supervisor_leaves_plugins_to_their_backend() {
    let out = common::tmpfs_dir();
    let one_shot = format!(
        "[backends.single]\nkind = \"command\"\ncommand = [\"python3\", {:?}, \"get\", \"{{path}}\"]\nenv = [\"FILES_PLUGIN_*\"]\nnot_found_exit_codes = [3]\n",
        plugin().display().to_string()
    );
    let project = Project::new(
        &json_backend(),
        &format!(
            "{one_shot}[output]\ndir = \"{}\"\n\
             [secrets.db]\nref = \"files://prod/db\"\nrefresh = \"1s\"\n\
             [secrets.api]\nref = \"single://prod/api\"\nrefresh = \"1s\"\n",
            out.path().join("secrets").display()
        ),
    );
    project.seed("prod/db", b"db-1");
    project.seed("prod/api", b"api-1");
    let dir = out.path().join("secrets");
    // The program changes the values itself once it has read the first
    // ones, then waits (at most 30 s) for both new ones.
    let script = format!(
        "cat {d}/db {d}/api >/dev/null || exit 2; \
         printf db-2 > {s}/prod/db.new && mv {s}/prod/db.new {s}/prod/db; \
         printf api-2 > {s}/prod/api.new && mv {s}/prod/api.new {s}/prod/api; \
         i=0; while [ $i -lt 300 ]; do \
           if [ \"$(cat {d}/db)\" = db-2 ] && [ \"$(cat {d}/api)\" = api-2 ]; then exit 0; fi; \
           i=$((i+1)); sleep 0.1; done; exit 1",
        d = dir.display(),
        s = project.store.display()
    );
    let output = project.hushbox_logged(&["exec", "--watch", "--", "sh", "-c", &script]);
    assert_eq!(
        code(&output),
        0,
        "the new values did not arrive:\n{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("cannot wait for the plugin"),
        "{}",
        stderr(&output)
    );
}

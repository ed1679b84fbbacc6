//! Templates (`[templates.NAME]`) through the binary, as a user runs them:
//! the README's `DATABASE_URL` and `config.yml` from the age store and from
//! a real OpenBao over TLS, written in the same generation as the secrets;
//! per-template modes and owners; a thousand templates in one generation;
//! errors that name the template and line; `check` without fetching;
//! `render` on a pipe and refused on a terminal; and a canary in a secret
//! that never reaches stderr or stdout of a failure, at trace level.

mod common;

#[path = "../backends/vault/tests/common/bao.rs"]
mod bao;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{HUSHBOX, code, run_with_stdin, stderr, stdout, tmpfs_dir};

/// Part of the database password in every test: it must never show up in
/// an error or a log line.
const CANARY: &str = "CANARYtmpl7Q";
/// The password as stored: characters a URL's userinfo cannot hold as they
/// are, and the canary.
const PASSWORD: &str = "p@ss/w:rd CANARYtmpl7Q%";
/// The password percent-encoded as `urlencode` must give it.
const PASSWORD_URLENCODED: &str = "p%40ss%2Fw%3Ard%20CANARYtmpl7Q%25";

/// The README's templates section, after `[output]` (see README.md,
/// "Templates: config files from secrets").
const README_TEMPLATES: &str = r#"
[secrets.db_user]
ref = "SCHEME://PATH#user"

[secrets.db_password]
ref = "SCHEME://PATH#password"

[templates.database_url]
inline = "postgres://{{ secret('db_user') }}:{{ secret('db_password') | urlencode }}@db:5432/app"
env_value = "DATABASE_URL"

[templates."config.yml"]
source = "config/app.yml.tmpl"
mode = "0440"
env = "APP_CONFIG_FILE"
"#;

/// `config/app.yml.tmpl` of the README.
const README_CONFIG: &str = "\
database:
  user: {{ secret('db_user') }}
  password: {{ secret('db_password') | json }}
{% if secret('db_user') %}
  pool: 10
{% endif %}
";

fn expected_config() -> String {
    format!("database:\n  user: app\n  password: \"{PASSWORD}\"\n  pool: 10\n")
}

/// A project with an age store holding `prod/db` (`{"user", "password"}`),
/// a fresh home with an identity, and an output directory on tmpfs.
struct Project {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
    out: tempfile::TempDir,
    /// `[backends.age]` as `store init` wrote it.
    backends: String,
}

impl Project {
    fn new() -> Self {
        let project = Self {
            dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            out: tmpfs_dir(),
            backends: String::new(),
        };
        project.ok(&["keygen"], &[]);
        project.ok(&["store", "init"], &[]);
        let document = format!(r#"{{"user":"app","password":"{PASSWORD}"}}"#);
        let output = run_with_stdin(
            project.command(&["store", "set", "--raw", "prod/db"], &[]),
            Some(document.as_bytes()),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let backends = fs::read_to_string(project.path("hushbox.toml")).unwrap();
        fs::create_dir(project.path("config")).unwrap();
        fs::write(project.path("config/app.yml.tmpl"), README_CONFIG).unwrap();
        Self {
            backends,
            ..project
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }

    /// Writes the manifest: the store's backend, `[output]` into the tmpfs
    /// directory, and `rest`.
    fn manifest(&self, rest: &str) {
        let text = format!(
            "{}\n[output]\ndir = \"{}\"\n{rest}",
            self.backends,
            self.out.path().display()
        );
        fs::write(self.path("hushbox.toml"), text).unwrap();
    }

    fn readme_manifest(&self) {
        self.manifest(&README_TEMPLATES.replace("SCHEME://PATH", "age://prod/db"));
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = common::hushbox_command(self.dir.path(), self.home.path(), args);
        command.env("HUSHBOX_LOG", "trace");
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let output = self.command(args, env).output().unwrap();
        assert_no_canary(&output);
        output
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let output = self.command(args, env).output().unwrap();
        assert!(
            output.status.success(),
            "hushbox {args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains(CANARY), "{}", stderr(&output));
        output
    }

    fn fails(&self, args: &[&str], expected_code: i32) -> String {
        let output = self.run(args, &[]);
        assert_eq!(code(&output), expected_code, "{}", stderr(&output));
        stderr(&output)
    }

    fn current_generation(&self) -> String {
        fs::read_link(self.out("..data"))
            .unwrap()
            .display()
            .to_string()
    }
}

fn assert_no_canary(output: &Output) {
    for (stream, text) in [("stderr", stderr(output)), ("stdout", stdout(output))] {
        assert!(!text.contains(CANARY), "the canary is on {stream}: {text}");
        assert!(
            !text.contains("p@ss"),
            "the password is on {stream}: {text}"
        );
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// The README's example from the age store: `inject` writes the secrets,
/// `database_url` and `config.yml` in one generation; `run` gives the
/// program `DATABASE_URL` and the file's path; a changed password changes
/// both rendered files in one new generation.
#[test]
fn the_readme_example_renders_from_the_age_store_in_one_generation() {
    let project = Project::new();
    project.readme_manifest();
    let output = project.ok(&["inject"], &[]);
    assert!(
        stderr(&output).contains("wrote 2 secrets and 2 templates"),
        "{}",
        stderr(&output)
    );
    let url = format!("postgres://app:{PASSWORD_URLENCODED}@db:5432/app");
    assert_eq!(read(&project.out("database_url")), url);
    assert_eq!(read(&project.out("config.yml")), expected_config());
    assert_eq!(read(&project.out("db_password")), PASSWORD);
    assert_eq!(mode(&project.out("config.yml")), 0o440);
    assert_eq!(mode(&project.out("database_url")), 0o400);
    // Every file sits in the one generation `..data` names.
    let generation = project.current_generation();
    for name in ["db_user", "db_password", "database_url", "config.yml"] {
        assert_eq!(
            fs::read_link(project.out(name)).unwrap(),
            Path::new("..data").join(name)
        );
        assert!(project.out(&generation).join(name).is_file(), "{name}");
    }
    let again = project.ok(&["inject"], &[]);
    assert!(stderr(&again).contains("unchanged"), "{}", stderr(&again));

    // `run`: the rendered URL in the environment, the file's path.
    let output = project.ok(
        &[
            "run",
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$DATABASE_URL\"; cat \"$APP_CONFIG_FILE\"",
        ],
        &[],
    );
    assert_eq!(stdout(&output), format!("{url}\n{}", expected_config()));

    // A new password: one new generation with both renderings changed.
    let rotated = r#"{"user":"app","password":"rotated/2"}"#;
    let output = run_with_stdin(
        project.command(&["store", "set", "--raw", "prod/db"], &[]),
        Some(rotated.as_bytes()),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    project.ok(&["inject"], &[]);
    let rotated_generation = project.current_generation();
    assert_ne!(rotated_generation, generation);
    let new_dir = project.out(&rotated_generation);
    assert_eq!(read(&new_dir.join("db_password")), "rotated/2");
    assert_eq!(
        read(&new_dir.join("database_url")),
        "postgres://app:rotated%2F2@db:5432/app"
    );
    assert!(read(&new_dir.join("config.yml")).contains("password: \"rotated/2\""));
}

/// The same manifest against a real OpenBao over TLS.
#[test]
fn the_readme_example_renders_from_openbao_over_tls() {
    let bao = bao::Bao::start_tls();
    bao.kv_put(
        "secret",
        "app/db",
        &format!(r#"{{"user":"app","password":"{PASSWORD}"}}"#),
    );
    let project = Project::new();
    fs::write(project.path("vault-token"), "root\n").unwrap();
    let backends = format!(
        "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"{}\"\nca_cert = \"{}\"\n\
         auth = {{ method = \"token\", token_file = \"vault-token\" }}\n",
        bao.address,
        bao.ca_file.as_ref().unwrap().display()
    );
    let project = Project {
        backends,
        ..project
    };
    project.manifest(&README_TEMPLATES.replace("SCHEME://PATH", "vault://secret/app/db"));
    project.ok(&["inject"], &[]);
    assert_eq!(
        read(&project.out("database_url")),
        format!("postgres://app:{PASSWORD_URLENCODED}@db:5432/app")
    );
    assert_eq!(read(&project.out("config.yml")), expected_config());
    let output = project.ok(&["render", "database_url"], &[]);
    assert_eq!(
        stdout(&output),
        format!("postgres://app:{PASSWORD_URLENCODED}@db:5432/app")
    );
}

/// `mode`, `uid` and `gid` per template, defaulting to `[output]`'s; a
/// changed owner is a new generation.
#[test]
fn per_template_modes_and_owners() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test gives files to other users: run it as root"
    );
    let project = Project::new();
    let templates = |uid: u32| {
        format!(
            "uid = 1000\ngid = 1000\nmode = \"0400\"\n\
             [secrets.db_password]\nref = \"age://prod/db#password\"\n\
             [templates.nginx_conf]\ninline = \"password {{{{ secret('db_password') | json }}}};\"\n\
             uid = {uid}\ngid = 2345\nmode = \"0440\"\n\
             [templates.default_owner]\ninline = \"x\"\n"
        )
    };
    project.manifest(&templates(1234));
    project.ok(&["inject"], &[]);
    let nginx = fs::metadata(project.out("nginx_conf")).unwrap();
    assert_eq!(
        (nginx.uid(), nginx.gid(), nginx.mode() & 0o7777),
        (1234, 2345, 0o440)
    );
    let plain = fs::metadata(project.out("default_owner")).unwrap();
    assert_eq!(
        (plain.uid(), plain.gid(), plain.mode() & 0o7777),
        (1000, 1000, 0o400)
    );
    let secret = fs::metadata(project.out("db_password")).unwrap();
    assert_eq!((secret.uid(), secret.mode() & 0o7777), (1000, 0o400));
    assert!(stderr(&project.ok(&["inject"], &[])).contains("unchanged"));
    project.manifest(&templates(1235));
    assert!(stderr(&project.ok(&["inject"], &[])).contains("wrote"));
    assert_eq!(fs::metadata(project.out("nginx_conf")).unwrap().uid(), 1235);

    // Refused before anything is fetched or written: a writable mode, and
    // (uid_t)-1.
    for bad in ["mode = \"0666\"", "uid = 4294967295"] {
        project.manifest(&format!("[templates.x]\ninline = \"x\"\n{bad}\n"));
        let text = project.fails(&["inject"], 78);
        assert!(text.contains("[templates.x]."), "{text}");
    }
}

/// A thousand templates using two secrets land in one generation.
#[test]
fn a_thousand_templates_in_one_generation() {
    let project = Project::new();
    let mut rest = String::from(
        "[secrets.db_user]\nref = \"age://prod/db#user\"\n\
         [secrets.db_password]\nref = \"age://prod/db#password\"\n",
    );
    for index in 0..1000 {
        rest.push_str(&format!(
            "[templates.t{index:04}]\ninline = \"{index}:{{{{ secret('db_user') }}}}:{{{{ secret('db_password') | urlencode }}}}\"\n"
        ));
    }
    project.manifest(&rest);
    let started = std::time::Instant::now();
    let output = project.ok(&["inject"], &[]);
    let elapsed = started.elapsed();
    assert!(
        stderr(&output).contains("wrote 2 secrets and 1000 templates"),
        "{}",
        stderr(&output)
    );
    let generation = project.out(&project.current_generation());
    assert_eq!(fs::read_dir(&generation).unwrap().count(), 1002);
    assert_eq!(
        read(&generation.join("t0999")),
        format!("999:app:{PASSWORD_URLENCODED}")
    );
    eprintln!("1,000 templates: inject took {elapsed:?}");
}

/// Undefined secrets, fields and variables are errors naming the template,
/// its file and line, quoting the template's line (never the output); a
/// failure after the fetch leaves the previous generation as it was.
#[test]
fn undefined_names_fail_with_the_template_line_and_leave_the_last_generation() {
    let project = Project::new();
    project.readme_manifest();
    project.ok(&["inject"], &[]);
    let generation = project.current_generation();

    // An undeclared secret, found by `check` without fetching anything.
    fs::write(
        project.path("config/app.yml.tmpl"),
        "database:\n  user: {{ secret('db_user') }}\n  password: {{ secret('db_pasword') }}\n",
    )
    .unwrap();
    let text = project.fails(&["check"], 78);
    assert!(
        text.contains("[templates.config.yml]") && text.contains("app.yml.tmpl, line 3"),
        "{text}"
    );
    assert!(
        text.contains("secret `db_pasword` is not declared"),
        "{text}"
    );
    assert!(
        text.contains("3 |   password: {{ secret('db_pasword') }}"),
        "{text}"
    );
    project.fails(&["inject"], 78);

    // An undefined variable.
    fs::write(
        project.path("config/app.yml.tmpl"),
        "a: 1\nb: {{ password }}\n",
    )
    .unwrap();
    let text = project.fails(&["check"], 78);
    assert!(
        text.contains("line 2") && text.contains("undefined"),
        "{text}"
    );

    // A field the secret lacks: only a fetch can tell, and it stops the
    // generation after the fetch.
    fs::write(
        project.path("config/app.yml.tmpl"),
        "x\n\n{{ secret('db_password') }}{{ secret('db_user#nope') }}\n",
    )
    .unwrap();
    project.ok(&["check"], &[]);
    let text = project.fails(&["check", "--fetch"], 78);
    assert!(
        text.contains("line 3") && text.contains("has no fields"),
        "{text}"
    );
    let text = project.fails(&["inject"], 78);
    assert!(text.contains("secret('db_user#nope')"), "{text}");
    project.fails(&["run", "--", "true"], 78);
    assert_eq!(project.current_generation(), generation);
    assert_eq!(read(&project.out("config.yml")), expected_config());

    // Operations on a secret that the engine would describe by printing
    // the operand: the kind only, never the value.
    for template in [
        "{{ secret('db_password') - 1 }}",
        "{{ secret('db_password') * 2 }}",
        "{{ -secret('db_password') }}",
    ] {
        fs::write(project.path("config/app.yml.tmpl"), template).unwrap();
        let text = project.fails(&["inject"], 78);
        assert!(text.contains("invalid operation"), "{text}");
    }
}

/// A template reads neither files, nor the environment, nor a secret the
/// manifest does not declare (an environment reference of `run` included).
#[test]
fn a_template_reads_no_file_environment_or_undeclared_secret() {
    let project = Project::new();
    for template in [
        "{% include '/etc/passwd' %}",
        "{% import '/etc/passwd' as p %}",
        "{{ HOME }}",
        "{{ env.HOME }}",
        "{{ secret('API_KEY') }}",
        "{{ secret('age://prod/db') }}",
        "{{ secret('../secrets/prod/db') }}",
    ] {
        project.manifest(&format!(
            "[secrets.db_user]\nref = \"age://prod/db#user\"\n[templates.t]\ninline = \"\"\"{template}\"\"\"\n"
        ));
        let output = project.run(
            &["run", "--resolve-env", "API_KEY", "--", "true"],
            &[("API_KEY", "age://prod/db#password")],
        );
        assert_eq!(code(&output), 78, "{template}: {}", stderr(&output));
        let text = stderr(&output);
        assert!(text.contains("[templates.t]"), "{template}: {text}");
        assert!(!text.contains("root:"), "{template}: {text}");
        assert!(
            !text.contains(project.home.path().to_str().unwrap()),
            "{text}"
        );
    }
}

/// `check` validates templates without fetching: a backend nobody can
/// reach does not matter to it.
#[test]
fn check_validates_templates_without_fetching() {
    let project = Project::new();
    let project = Project {
        backends:
            "version = 1\n[backends.vault]\nkind = \"vault\"\naddress = \"http://127.0.0.1:9\"\n\
                   auth = { method = \"token\", token_file = \"vault-token\" }\n"
                .to_owned(),
        ..project
    };
    fs::write(project.path("vault-token"), "root\n").unwrap();
    project.manifest(&README_TEMPLATES.replace("SCHEME://PATH", "vault://secret/app/db"));
    let output = project.ok(&["check"], &[]);
    let text = stdout(&output);
    assert!(text.contains("template: config.yml"), "{text}");
    assert!(text.contains("template: database_url  inline"), "{text}");
    assert!(text.contains("2 templates"), "{text}");
    let output = project.ok(&["check", "--format", "json"], &[]);
    assert!(stdout(&output).contains("\"templates\""));

    for (template, expected) in [
        ("{% if %}", "syntax error"),
        ("{{ secret('nope') }}", "secret `nope` is not declared"),
        ("{{ secret('db_user') | upper }}", "unknown"),
        ("{{ missing }}", "undefined"),
    ] {
        fs::write(project.path("config/app.yml.tmpl"), template).unwrap();
        let text = project.fails(&["check"], 78);
        assert!(text.contains(expected), "{template}: {text}");
        assert!(text.contains("[templates.config.yml]"), "{text}");
    }
    fs::write(
        project.path("config/app.yml.tmpl"),
        "x".repeat(1024 * 1024 + 1),
    )
    .unwrap();
    let text = project.fails(&["check"], 78);
    assert!(text.contains("larger than 1 MiB"), "{text}");
    fs::remove_file(project.path("config/app.yml.tmpl")).unwrap();
    let text = project.fails(&["check"], 78);
    assert!(
        text.contains("app.yml.tmpl") && text.contains("does not exist"),
        "{text}"
    );

    // Exactly one of source and inline.
    project.manifest("[templates.t]\ninline = \"x\"\nsource = \"y\"\n");
    let text = project.fails(&["check"], 78);
    assert!(text.contains("exactly one of"), "{text}");
    // A template's file may not be a secret's.
    project.manifest(
        "[secrets.db_user]\nref = \"vault://secret/app/db#user\"\n[templates.db_user]\ninline = \"x\"\n",
    );
    let text = project.fails(&["check"], 78);
    assert!(text.contains("same file `db_user`"), "{text}");
}

/// `render NAME` prints one rendering to a pipe and refuses a terminal
/// unless `--force`; an unknown name lists the known ones.
#[test]
fn render_prints_to_a_pipe_and_refuses_a_terminal() {
    let project = Project::new();
    project.readme_manifest();
    let output = project.ok(&["render", "config.yml"], &[]);
    assert_eq!(stdout(&output), expected_config());

    let text = project.fails(&["render", "nope"], 78);
    assert!(text.contains("known: config.yml, database_url"), "{text}");

    common::require_tool("script", "bsdutils");
    let on_terminal = |extra: &str| {
        let mut command = Command::new("script");
        command
            .args(["-qec"])
            .arg(format!("{HUSHBOX} render database_url{extra}"))
            .arg("/dev/null")
            .current_dir(project.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", project.home.path());
        run_with_stdin(command, None)
    };
    let output = on_terminal("");
    assert_eq!(output.status.code(), Some(78), "{}", stdout(&output));
    assert!(stdout(&output).contains("refusing to print a rendered template to a terminal"));
    assert!(!stdout(&output).contains(CANARY));
    let output = on_terminal(" --force");
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains(PASSWORD_URLENCODED));
}

/// With `inject --watch`, a rotation of the secret two templates use lands
/// in ONE generation with them: `db_password`, `database_url` and
/// `config.yml` read through the same `..data` always agree, and the hook
/// fires once for it, with names and the generation, never values.
#[test]
fn a_rotation_under_watch_renders_the_templates_into_the_same_generation_and_fires_once() {
    let project = Project::new();
    let hook_log = project.path("hooks.log");
    project.manifest(&format!(
        "{}\n[watch]\ninterval = \"1s\"\ndebounce = \"200ms\"\n\
         on_change = {{ exec = [\"sh\", \"-c\", \"echo \\\"$HUSHBOX_GENERATION $HUSHBOX_CHANGED\\\" >> {}\"] }}\n",
        README_TEMPLATES.replace("SCHEME://PATH", "age://prod/db"),
        hook_log.display()
    ));
    let log_file = project.path("watch.stderr");
    let mut sidecar = project
        .command(&["inject", "--watch"], &[])
        .stderr(fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let url = project.out("database_url");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; stderr:\n{}",
                fs::read_to_string(&log_file).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    wait_for("the first generation", &|| url.exists());
    assert!(read(&url).contains(PASSWORD_URLENCODED));

    let new_password = format!("n3w:p@ss {CANARY}");
    let document = format!(r#"{{"user":"app","password":"{new_password}"}}"#);
    let output = run_with_stdin(
        project.command(&["store", "set", "--raw", "prod/db"], &[]),
        Some(document.as_bytes()),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let new_encoded = "n3w%3Ap%40ss%20CANARYtmpl7Q";
    wait_for("the rotated generation", &|| {
        fs::read_to_string(&url).is_ok_and(|text| text.contains(new_encoded))
    });
    wait_for("the hook", &|| hook_log.exists());

    // One generation holds all three, through the one `..data` link.
    let generation = project
        .out
        .path()
        .join(fs::read_link(project.out("..data")).unwrap());
    assert_eq!(read(&generation.join("db_password")), new_password);
    assert!(read(&generation.join("database_url")).contains(new_encoded));
    assert!(read(&generation.join("config.yml")).contains(&format!("\"{new_password}\"")));

    // Past the debounce and more rounds: still one hook run, for the
    // changed secrets by name.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let hooks = read(&hook_log);
    assert_eq!(hooks.lines().count(), 1, "{hooks}");
    assert!(hooks.contains("db_password"), "{hooks}");
    assert!(
        !hooks.contains("p@ss") && !hooks.contains(CANARY),
        "{hooks}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sidecar.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = sidecar.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let logged = fs::read_to_string(&log_file).unwrap();
    assert!(
        !logged.contains(CANARY) && !logged.contains("p@ss"),
        "{logged}"
    );
}

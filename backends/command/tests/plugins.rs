//! The command backend against real processes: the example plugin for
//! 1,000 secrets in one batch, and small `sh` and Python plugins that time
//! out, crash, exit non-zero, print too much, print bytes that are not
//! UTF-8, print a canary on stderr, break the JSON protocol, and echo their
//! arguments and environment back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{DirSeeder, config, environment, files_plugin, python, quoted};
use hushbox_command::CommandBackend;
use hushbox_core::{Backend, Document, Error, ErrorKind, Result, SecretRef};
use hushbox_testkit::{Canary, LogCapture, Seeder};

fn reference(text: &str) -> SecretRef {
    text.parse().unwrap()
}

/// An instance named `t` from manifest text, with this process's PATH and
/// HOME and `extra` as the environment it may pass on.
fn backend_with_env(toml: &str, extra: &[(&str, &str)]) -> CommandBackend {
    CommandBackend::new("t", &config(toml), &environment(extra)).unwrap()
}

fn backend(toml: &str) -> CommandBackend {
    backend_with_env(toml, &[])
}

/// An inline script as one element of `command`: its braces doubled, so
/// that they are not placeholders.
fn script(code: &str) -> String {
    code.replace('{', "{{").replace('}', "}}")
}

/// `command = [...]` for a list of arguments.
fn command(args: &[&str]) -> String {
    let quoted: Vec<String> = args.iter().map(|arg| quoted(arg)).collect();
    format!("command = [{}]", quoted.join(", "))
}

async fn fetch(backend: &CommandBackend, text: &str) -> Result<Document> {
    backend.fetch(&reference(text)).await
}

fn expect_error(result: Result<Document>, kind: ErrorKind) -> Error {
    match result {
        Ok(_) => panic!("expected an error of kind {kind:?}, got a value"),
        Err(error) => {
            assert_eq!(error.kind(), kind, "{error}");
            error
        }
    }
}

#[tokio::test]
async fn one_thousand_secrets_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let log = dir.path().join("starts.log");
    let seeder = DirSeeder(root.clone());
    let mut expected = Vec::new();
    for index in 0..1000 {
        let path = format!("team-{}/secret-{index}", index % 7);
        let mut value = format!("value {index} \"quoted\" \\ é\n").into_bytes();
        if index % 10 == 0 {
            // Binary values travel as `value_base64`.
            value.extend_from_slice(&[0xff, 0x00, (index % 256) as u8]);
        }
        seeder.seed(&path, &value).await.unwrap();
        expected.push((reference(&format!("t://{path}")), value));
    }
    let backend = backend_with_env(
        &format!(
            "{}\nprotocol = 'json'\nenv = ['FILES_PLUGIN_*']",
            command(&[&python(), &files_plugin(), "json"])
        ),
        &[
            ("FILES_PLUGIN_ROOT", root.to_str().unwrap()),
            ("FILES_PLUGIN_LOG", log.to_str().unwrap()),
        ],
    );
    let mut locations: Vec<SecretRef> = expected.iter().map(|(r, _)| r.clone()).collect();
    locations.insert(500, reference("t://team-1/absent"));
    let results = backend.fetch_many(&locations).await;
    assert_eq!(results.len(), 1001);
    let mut results = results.into_iter();
    for (index, (location, value)) in expected.iter().enumerate() {
        if index == 500 {
            let error = expect_error(results.next().unwrap(), ErrorKind::NotFound);
            assert!(error.to_string().contains("t://team-1/absent"), "{error}");
        }
        let document = results
            .next()
            .unwrap()
            .unwrap_or_else(|error| panic!("{location}: {error}"));
        assert!(document.value.expose() == value.as_slice(), "{location}");
    }
    let starts = std::fs::read_to_string(&log).unwrap();
    assert_eq!(starts, "start json\n", "one process served the whole batch");
}

#[tokio::test]
async fn arguments_reach_the_plugin_verbatim_as_one_element_each() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted");
    let path = format!(
        "a b 'single' \"double\"; touch {p} $(touch {p}) `touch {p}` | tee {p} && x > {p} * ~ \\",
        p = planted.display()
    );
    let backend = backend(&command(&[
        &python(),
        "-c",
        &script("import sys, json; sys.stdout.write(json.dumps(sys.argv[1:]))"),
        "{path}",
        "--version={param.v}",
        "literal {{braces}}",
    ]));
    let document = fetch(&backend, &format!("t://{path}?v=1;$(id)"))
        .await
        .unwrap();
    let argv: Vec<String> = serde_json::from_slice(document.value.expose()).unwrap();
    assert_eq!(
        argv,
        [path.as_str(), "--version=1;$(id)", "literal {braces}"]
    );
    assert!(!planted.exists(), "no shell ever ran the path");
}

#[tokio::test]
async fn the_environment_is_path_home_and_what_env_lists() {
    let backend = backend_with_env(
        &format!("{}\nenv = ['STORE_*', 'ONE_TOKEN']", command(&["env"])),
        &[
            ("STORE_URL", "https://store"),
            ("STORE_TOKEN", "t1"),
            ("ONE_TOKEN", "t2"),
            ("ONE_TOKEN_NOT", "x"),
            ("VAULT_TOKEN", "never passed"),
        ],
    );
    let document = fetch(&backend, "t://x").await.unwrap();
    let text = String::from_utf8(document.value.expose().to_vec()).unwrap();
    let mut names: Vec<&str> = text
        .lines()
        .map(|line| line.split_once('=').unwrap().0)
        .collect();
    names.sort_unstable();
    let mut expected = vec!["ONE_TOKEN", "STORE_TOKEN", "STORE_URL"];
    for name in ["HOME", "PATH"] {
        if std::env::var_os(name).is_some() {
            expected.push(name);
        }
    }
    expected.sort_unstable();
    assert_eq!(names, expected);
    // What the plugin gets are its credentials: kept from hushbox's child.
    let mut variables = backend.credential_sources().variables;
    variables.sort();
    assert_eq!(variables, ["ONE_TOKEN", "STORE_TOKEN", "STORE_URL"]);
}

#[tokio::test]
async fn stdin_is_closed_in_the_one_shot_protocol() {
    let backend = backend(&format!(
        "{}\ntimeout = '5s'",
        command(&[
            "sh",
            "-c",
            "if read line; then echo open; else echo closed; fi"
        ])
    ));
    let document = fetch(&backend, "t://x").await.unwrap();
    assert_eq!(document.value.expose(), b"closed");
}

/// Polls until process `pid` is gone (or a zombie nobody waits for yet).
fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Ok(_) => std::thread::yield_now(),
        }
    }
    false
}

#[tokio::test]
async fn a_timeout_kills_the_plugin_and_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let pid_file = pid_file.to_str().unwrap();
    // The shell waits for its child; and a shell that exits at once while
    // its child keeps stdout open must time out too.
    for script in [
        "sleep 60 & echo $! > \"$1\"; wait",
        "sleep 60 & echo $! > \"$1\"",
    ] {
        let backend = backend(&format!(
            "{}\ntimeout = '300ms'",
            command(&["sh", "-c", script, "sh", pid_file])
        ));
        let started = Instant::now();
        let error = expect_error(fetch(&backend, "t://slow").await, ErrorKind::Unavailable);
        assert!(started.elapsed() < Duration::from_secs(5), "{script}");
        assert!(error.to_string().contains("within 300 ms"), "{error}");
        assert!(error.to_string().starts_with("t://slow: "), "{error}");
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_gone(pid),
            "the plugin's child {pid} survived ({script})"
        );
    }
}

#[tokio::test]
async fn a_fetch_dropped_half_way_kills_the_plugins_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let backend = backend(&format!(
        "{}\ntimeout = '1m'",
        command(&[
            "sh",
            "-c",
            "sleep 60 & echo $! > \"$1\"; wait",
            "sh",
            pid_file.to_str().unwrap()
        ])
    ));
    // hushbox drops a fetch when it is told to stop while fetching.
    let location = reference("t://x");
    let mut fetch = Box::pin(backend.fetch(&location));
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        tokio::select! {
            _ = &mut fetch => panic!("the plugin cannot finish for a minute"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the plugin never started");
    };
    drop(fetch);
    assert!(wait_gone(pid), "the plugin's child {pid} survived the drop");
}

#[tokio::test]
async fn every_fetch_runs_the_plugin_so_changes_are_seen() {
    // The watcher re-fetches at `refresh` and compares digests: nothing may
    // be cached between fetches, in either protocol.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    for protocol in ["one-shot", "json"] {
        let settings = match protocol {
            "json" => format!(
                "{}\nprotocol = 'json'\nenv = ['FILES_PLUGIN_ROOT']",
                command(&[&python(), &files_plugin(), "json"])
            ),
            _ => format!(
                "{}\nenv = ['FILES_PLUGIN_ROOT']",
                command(&[&python(), &files_plugin(), "get", "{path}"])
            ),
        };
        let backend = backend_with_env(&settings, &[("FILES_PLUGIN_ROOT", root)]);
        for value in [&b"before rotation"[..], b"after"] {
            std::fs::write(dir.path().join("rotated"), value).unwrap();
            let document = fetch(&backend, "t://rotated").await.unwrap();
            assert_eq!(document.value.expose(), value, "{protocol}");
        }
    }
}

#[tokio::test]
async fn crashes_and_exit_codes_map_onto_error_kinds() {
    let crash = backend(&command(&["sh", "-c", "kill -SEGV $$"]));
    let error = expect_error(fetch(&crash, "t://x").await, ErrorKind::Unavailable);
    assert!(error.to_string().contains("signal 11"), "{error}");

    let script = "echo 'Error: x is not in the password store.' >&2; exit 7";
    let plain = backend(&command(&["sh", "-c", script]));
    let error = expect_error(fetch(&plain, "t://x").await, ErrorKind::Unavailable);
    assert!(error.to_string().contains("exited with code 7"), "{error}");
    assert!(error.to_string().contains("39 bytes on stderr"), "{error}");

    let by_code = backend(&format!(
        "{}\nnot_found_exit_codes = [3, 7]",
        command(&["sh", "-c", script])
    ));
    expect_error(fetch(&by_code, "t://x").await, ErrorKind::NotFound);

    let by_pattern = backend(&format!(
        "{}\nnot_found_pattern = 'is not in the password store'",
        command(&["sh", "-c", script])
    ));
    let error = expect_error(fetch(&by_pattern, "t://x").await, ErrorKind::NotFound);
    assert!(error.to_string().contains("not_found_pattern"), "{error}");

    let other_pattern = backend(&format!(
        "{}\nnot_found_pattern = '^No such secret'",
        command(&["sh", "-c", script])
    ));
    expect_error(fetch(&other_pattern, "t://x").await, ErrorKind::Unavailable);

    let missing = backend(&command(&["hushbox-no-such-plugin", "{path}"]));
    let error = expect_error(fetch(&missing, "t://x").await, ErrorKind::Config);
    assert!(
        error
            .to_string()
            .contains("cannot start `hushbox-no-such-plugin`: not found"),
        "{error}"
    );

    let unused = backend(&command(&["echo", "{path}"]));
    expect_error(fetch(&unused, "t://x?version=2").await, ErrorKind::Config);
}

#[tokio::test]
async fn oversized_output_is_refused_and_the_plugin_stopped() {
    let limit = "max_size = 1000";
    let over = backend(&format!(
        "{}\n{limit}",
        command(&["head", "-c", "1001", "/dev/zero"])
    ));
    expect_error(fetch(&over, "t://x").await, ErrorKind::TooLarge);
    // Endless output: refused at once, not after the timeout.
    let endless = backend(&format!("{}\n{limit}\ntimeout = '1m'", command(&["yes"])));
    let started = Instant::now();
    let error = expect_error(fetch(&endless, "t://x").await, ErrorKind::TooLarge);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(error.to_string().contains("1000 bytes"), "{error}");
    // Exactly the limit, plus the newline that is trimmed, is accepted.
    let exact = backend(&format!(
        "{}\n{limit}",
        command(&["sh", "-c", "head -c 1000 /dev/zero; echo"])
    ));
    let document = fetch(&exact, "t://x").await.unwrap();
    assert_eq!(document.value.len(), 1000);
    // In a batch, one oversized value fails alone: one just over the limit,
    // and one whose reply line is too long to be held at all.
    let code = "import sys\nfor i, line in enumerate(sys.stdin):\n    print('{\"value\": \"%s\"}' % ('x' * {1: 1001, 2: 200000}.get(i, 10)), flush=True)";
    let batch = backend(&format!(
        "{}\n{limit}\nprotocol = 'json'",
        command(&[&python(), "-c", &script(code)])
    ));
    let results = batch
        .fetch_many(&[
            reference("t://a"),
            reference("t://b"),
            reference("t://c"),
            reference("t://d"),
        ])
        .await;
    let kinds: Vec<Option<ErrorKind>> = results
        .iter()
        .map(|result| result.as_ref().err().map(Error::kind))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(ErrorKind::TooLarge),
            Some(ErrorKind::TooLarge),
            None
        ]
    );
}

#[tokio::test]
async fn values_are_bytes_and_one_trailing_newline_is_trimmed_unless_raw() {
    let binary = backend(&command(&["printf", "\\377\\376\\000x\\r\\n"]));
    let document = fetch(&binary, "t://x").await.unwrap();
    assert_eq!(document.value.expose(), [0xff, 0xfe, 0x00, b'x']);
    let raw = backend(&format!(
        "{}\nraw = true",
        command(&["printf", "\\377\\376\\000x\\r\\n"])
    ));
    let document = fetch(&raw, "t://x").await.unwrap();
    assert_eq!(
        document.value.expose(),
        [0xff, 0xfe, 0x00, b'x', b'\r', b'\n']
    );
    let two = backend(&command(&["printf", "v\\n\\n"]));
    assert_eq!(fetch(&two, "t://x").await.unwrap().value.expose(), b"v\n");
}

#[tokio::test]
async fn the_plugins_stderr_never_reaches_errors_or_logs() {
    let canary = Canary::new();
    let value = canary.value();
    let failing = format!("echo 'cannot read {value}' >&2; exit 1");
    let succeeding = format!("echo 'debug {value}' >&2; echo ok");
    let json = format!(
        "import sys\nprint('leak {value}', file=sys.stderr)\nfor line in sys.stdin:\n    print('{{\"error\": \"permission_denied\", \"message\": \"denied {value}\"}}', flush=True)"
    );
    let instances = [
        (command(&["sh", "-c", &failing]), false),
        (command(&["sh", "-c", &succeeding]), true),
        (
            format!(
                "{}\nprotocol = 'json'",
                command(&[&python(), "-c", &script(&json)])
            ),
            false,
        ),
        (
            format!(
                "{}\nnot_found_pattern = 'nothing like it'",
                command(&["sh", "-c", &failing])
            ),
            false,
        ),
    ];
    let capture = LogCapture::start();
    let mut seen = String::new();
    for (settings, succeeds) in &instances {
        let backend = backend(settings);
        let results = backend.fetch_many(&[reference("t://x")]).await;
        for result in results {
            match result {
                Ok(document) => {
                    assert!(succeeds);
                    assert_eq!(document.value.expose(), b"ok");
                }
                Err(error) => {
                    assert!(!succeeds, "{error}");
                    seen.push_str(&format!("{error}\n{error:?}\n"));
                }
            }
        }
        seen.push_str(&format!("{backend:?}\n"));
    }
    let logs = capture.finish();
    assert!(
        logs.contains("the plugin finished"),
        "the capture saw the backend's logs: {logs}"
    );
    assert!(logs.contains("stderr_bytes"), "{logs}");
    assert!(canary.forms_in(seen.as_bytes()).is_empty(), "{seen}");
    assert!(canary.forms_in(logs.as_bytes()).is_empty());

    // `debug_stderr` acts: the plugin author sees stderr and messages, and
    // a warning says so when the instance is built.
    let capture = LogCapture::start();
    let failing_debug = backend(&format!(
        "{}\ndebug_stderr = true",
        command(&["sh", "-c", &failing])
    ));
    let error = expect_error(fetch(&failing_debug, "t://x").await, ErrorKind::Unavailable);
    assert!(canary.forms_in(error.to_string().as_bytes()).is_empty());
    let json_debug = backend(&format!(
        "{}\nprotocol = 'json'\ndebug_stderr = true",
        command(&[&python(), "-c", &script(&json)])
    ));
    expect_error(
        fetch(&json_debug, "t://x").await,
        ErrorKind::PermissionDenied,
    );
    let logs = capture.finish();
    assert!(logs.contains("`debug_stderr` is on"), "{logs}");
    assert!(logs.contains(&format!("cannot read {value}")), "{logs}");
    assert!(logs.contains(&format!("leak {value}")), "{logs}");
    assert!(logs.contains(&format!("denied {value}")), "{logs}");
}

/// A JSON plugin written inline: `body` runs once per request line.
fn json_plugin(code: &str, settings: &str) -> CommandBackend {
    backend(&format!(
        "{}\nprotocol = 'json'\n{settings}",
        command(&[&python(), "-c", &script(code)])
    ))
}

async fn kinds(backend: &CommandBackend, count: usize) -> Vec<Result<Vec<u8>, ErrorKind>> {
    let locations: Vec<SecretRef> = (0..count)
        .map(|index| reference(&format!("t://s{index}")))
        .collect();
    backend
        .fetch_many(&locations)
        .await
        .into_iter()
        .map(|result| {
            result
                .map(|document| document.value.expose().to_vec())
                .map_err(|error| error.kind())
        })
        .collect()
}

#[tokio::test]
async fn json_protocol_faults_are_errors_for_the_requests_they_touch() {
    // Answers the first request, then stops.
    let short = json_plugin(
        "import sys\nsys.stdin.readline()\nprint('{\"value\": \"one\"}', flush=True)",
        "",
    );
    assert_eq!(
        kinds(&short, 3).await,
        [
            Ok(b"one".to_vec()),
            Err(ErrorKind::Unavailable),
            Err(ErrorKind::Unavailable)
        ]
    );
    // A broken line in the middle fails that request only.
    let broken = json_plugin(
        "import sys\nfor i, line in enumerate(sys.stdin):\n    print('{\"value\": \"ok\"}' if i != 1 else '{\"value\": broken', flush=True)",
        "",
    );
    assert_eq!(
        kinds(&broken, 3).await,
        [
            Ok(b"ok".to_vec()),
            Err(ErrorKind::MalformedPayload),
            Ok(b"ok".to_vec())
        ]
    );
    // More replies than requests: nothing from it can be trusted.
    let chatty = json_plugin(
        "import sys\nfor line in sys.stdin:\n    print('{\"value\": \"a\"}\\n{\"value\": \"b\"}', flush=True)",
        "",
    );
    assert_eq!(
        kinds(&chatty, 2).await,
        [
            Err(ErrorKind::MalformedPayload),
            Err(ErrorKind::MalformedPayload)
        ]
    );
    // A plugin that fails as a whole fails every request.
    let failing = json_plugin(
        "import sys\nfor line in sys.stdin:\n    print('{\"value\": \"a\"}', flush=True)\nsys.exit(4)",
        "",
    );
    assert_eq!(
        kinds(&failing, 2).await,
        [Err(ErrorKind::Unavailable), Err(ErrorKind::Unavailable)]
    );
    // A plugin that never answers is stopped by the timeout.
    let stuck = json_plugin("import time\ntime.sleep(60)", "timeout = '300ms'");
    let started = Instant::now();
    assert_eq!(
        kinds(&stuck, 2).await,
        [Err(ErrorKind::Unavailable), Err(ErrorKind::Unavailable)]
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Requests carry the path and parameters exactly.
    let echo = json_plugin(
        "import sys, json\nfor line in sys.stdin:\n    print(json.dumps({'value': json.dumps(json.loads(line), sort_keys=True)}), flush=True)",
        "",
    );
    let document = echo
        .fetch(&reference("t://a b;$(id)?v=\"2\"#field"))
        .await
        .unwrap();
    assert_eq!(
        document.value.expose(),
        br#"{"params": {"v": "\"2\""}, "path": "a b;$(id)"}"#
    );
}

#[test]
fn the_example_plugin_is_executable_python() {
    use std::os::unix::fs::PermissionsExt;
    let plugin = files_plugin();
    let mode = std::fs::metadata(&plugin).unwrap().permissions().mode();
    assert!(
        mode & 0o111 != 0,
        "{plugin} should be executable (mode {mode:o})"
    );
    assert!(Path::new(&plugin).ends_with("examples/plugins/files.py"));
}

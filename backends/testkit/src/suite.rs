//! The conformance tests, one public function per behaviour of
//! [`Backend`]'s contract. Each stores its fixtures under
//! `<prefix>/<test name>/`.

use hushbox_core::{Backend, ErrorKind, SecretValue};

use crate::check::Check;
use crate::seed::Seeder;

/// A missing path is [`ErrorKind::NotFound`], and the error names the path.
pub async fn missing_path_is_not_found(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("missing_path_is_not_found", backend, seeder, prefix);
    // A sibling exists, so backends that list a directory to find a key
    // cannot pass by failing on an empty or missing parent.
    check.seed(&check.path("present"), b"present").await;
    for name in ["absent", "present/below"] {
        let path = check.path(name);
        let location = check.reference(&path, None);
        let what = format!("fetch of missing `{location}`");
        let error = check.expect_error(&what, backend.fetch(&location).await, ErrorKind::NotFound);
        check.expect_names(&what, &error, &path);
    }
}

/// Empty, binary, non-UTF-8, whitespace-edged and 64 KiB values come back
/// byte for byte, from [`Backend::fetch`] and through
/// [`Document::select`](hushbox_core::Document::select) without a field.
pub async fn values_round_trip(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("values_round_trip", backend, seeder, prefix);
    let mut large = vec![0u8; 64 * 1024];
    rand::fill(&mut large[..]);
    let cases: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("binary-0-255", (0..=255).collect()),
        (
            "non-utf8",
            vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80],
        ),
        // A trailing newline is part of the value: trimming is the output's
        // decision, never the backend's.
        ("whitespace", b"  padded value \t\r\n".to_vec()),
        ("64KiB", large),
    ];
    for (name, bytes) in &cases {
        let path = check.path(name);
        check.seed(&path, bytes).await;
        let location = check.reference(&path, None);
        let document = check.fetch_ok(&location).await;
        check.expect_bytes(&format!("the {name} value"), document.value.expose(), bytes);
        let selected = check.select_ok(&document, &location);
        check.expect_bytes(
            &format!("the {name} value through select"),
            selected.expose(),
            bytes,
        );
    }
}

const FIELDS_DOCUMENT: &str = r#"{
  "user": "app",
  "password": "p\"w\\d\nline2 \u00e9",
  "port": 5432,
  "nested": {"a": {"b": "deep"}, "x/y": {"~k": "escaped"}},
  "list": ["zero", "one"]
}"#;

/// `#key` selects a top-level key and `#/a/b` a JSON pointer: strings come
/// unescaped, other values as their JSON text. A reference *with* a field
/// passed to [`Backend::fetch`] still fetches the whole document.
pub async fn field_extraction(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("field_extraction", backend, seeder, prefix);
    let path = check.path("document");
    check.seed(&path, FIELDS_DOCUMENT.as_bytes()).await;

    let with_field = check.reference(&path, Some("user"));
    let document = check.fetch_ok(&with_field).await;
    check.expect_bytes(
        "the document fetched through a reference with a field",
        document.value.expose(),
        FIELDS_DOCUMENT.as_bytes(),
    );

    let cases: [(&str, &[u8]); 7] = [
        ("user", b"app"),
        ("password", "p\"w\\d\nline2 \u{e9}".as_bytes()),
        ("port", b"5432"),
        ("/nested/a/b", b"deep"),
        ("/nested/x~1y/~0k", b"escaped"),
        ("/list/1", b"one"),
        ("/user", b"app"),
    ];
    for (field, expected) in cases {
        let reference = check.reference(&path, Some(field));
        let value = check.select_ok(&document, &reference);
        check.expect_bytes(&format!("`{reference}`"), value.expose(), expected);
    }
}

/// A missing key, a missing pointer target and a JSON `null` are
/// [`ErrorKind::NotFound`], and the error names the reference.
pub async fn missing_field_is_not_found(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("missing_field_is_not_found", backend, seeder, prefix);
    let path = check.path("document");
    check
        .seed(&path, br#"{"present": "x", "empty": null, "o": {"k": 1}}"#)
        .await;
    let document = check.fetch_ok(&check.reference(&path, None)).await;
    for field in ["absent", "empty", "/o/absent", "/present/deeper", "/list/0"] {
        let reference = check.reference(&path, Some(field));
        let what = format!("`{reference}`");
        let error = check.expect_error(&what, document.select(&reference), ErrorKind::NotFound);
        check.expect_names(&what, &error, &path);
    }
}

/// A field asked of a value that is not a JSON object is
/// [`ErrorKind::MalformedPayload`].
pub async fn malformed_payload(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("malformed_payload", backend, seeder, prefix);
    let cases: [(&str, &[u8]); 3] = [
        ("text", b"plain text, not JSON"),
        ("broken-json", br#"{"key": "value", "#),
        ("non-utf8", &[0xff, 0xfe, b'{', b'}']),
    ];
    for (name, bytes) in cases {
        let path = check.path(name);
        check.seed(&path, bytes).await;
        let document = check.fetch_ok(&check.reference(&path, None)).await;
        let reference = check.reference(&path, Some("key"));
        let what = format!("`{reference}` of a {name} value");
        check.expect_error(
            &what,
            document.select(&reference),
            ErrorKind::MalformedPayload,
        );
    }
}

/// 32 concurrent fetches, of 8 distinct paths 4 times each, all return the
/// right value.
pub async fn concurrent_fetches(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("concurrent_fetches", backend, seeder, prefix);
    const DISTINCT: usize = 8;
    const FETCHES: usize = 32;
    let mut expected = Vec::with_capacity(DISTINCT);
    for index in 0..DISTINCT {
        let path = check.path(&format!("value-{index}"));
        // Distinct lengths too, so a mix-up cannot hide behind equal sizes.
        let bytes = format!("value {index} {}", "x".repeat(index * 7)).into_bytes();
        check.seed(&path, &bytes).await;
        expected.push((check.reference(&path, None), bytes));
    }
    let fetches = (0..FETCHES).map(|index| {
        let (location, _) = &expected[index % DISTINCT];
        backend.fetch(location)
    });
    let results = futures::future::join_all(fetches).await;
    for (index, result) in results.into_iter().enumerate() {
        let (location, bytes) = &expected[index % DISTINCT];
        let what = format!("concurrent fetch #{index} of `{location}`");
        match result {
            Ok(document) => check.expect_bytes(&what, document.value.expose(), bytes),
            Err(error) => check.unexpected_error(&what, &error),
        }
    }
}

/// [`Backend::fetch_many`] returns one result per location, in order, and a
/// failure in the middle hides none of the others.
pub async fn fetch_many_keeps_order_and_errors(
    backend: &dyn Backend,
    seeder: &dyn Seeder,
    prefix: &str,
) {
    let check = Check::new("fetch_many_keeps_order_and_errors", backend, seeder, prefix);
    let a = check.path("a");
    let b = check.path("b");
    let missing = check.path("missing");
    check.seed(&a, b"first").await;
    check.seed(&b, b"second value").await;
    let locations = [
        check.reference(&a, None),
        check.reference(&missing, None),
        check.reference(&b, None),
        check.reference(&a, None),
    ];
    let results = backend.fetch_many(&locations).await;
    if results.len() != locations.len() {
        check.fail(format_args!(
            "{} results for {} locations",
            results.len(),
            locations.len()
        ));
    }
    let expected: [Option<&[u8]>; 4] =
        [Some(b"first"), None, Some(b"second value"), Some(b"first")];
    for (index, (result, expected)) in results.into_iter().zip(expected).enumerate() {
        let what = format!("result #{index} (`{}`)", locations[index]);
        match expected {
            Some(bytes) => match result {
                Ok(document) => check.expect_bytes(&what, document.value.expose(), bytes),
                Err(error) => check.unexpected_error(&what, &error),
            },
            None => {
                let error = check.expect_error(&what, result, ErrorKind::NotFound);
                check.expect_names(&what, &error, &missing);
            }
        }
    }
}

/// Each of `put`, `list` and `delete` that the capabilities do not claim is
/// [`ErrorKind::Unsupported`], not a silent success.
pub async fn unsupported_operations_say_so(
    backend: &dyn Backend,
    seeder: &dyn Seeder,
    prefix: &str,
) {
    let check = Check::new("unsupported_operations_say_so", backend, seeder, prefix);
    let capabilities = backend.capabilities();
    let path = check.path("value");
    if !capabilities.write {
        let value = SecretValue::copy_from_slice(b"not stored");
        let result = backend.put(&path, &value).await;
        check.expect_error(
            "put without the write capability",
            result,
            ErrorKind::Unsupported,
        );
    }
    if !capabilities.list {
        let result = backend.list(prefix).await;
        check.expect_error(
            "list without the list capability",
            result,
            ErrorKind::Unsupported,
        );
    }
    if !capabilities.delete {
        check.seed(&path, b"kept").await;
        let result = backend.delete(&path).await;
        check.expect_error(
            "delete without the delete capability",
            result,
            ErrorKind::Unsupported,
        );
    }
}

/// (`write`) After [`Backend::put`] returns, a fetch gives the new value;
/// a second put replaces it, including by a shorter one.
pub async fn put_overwrites(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("put_overwrites", backend, seeder, prefix);
    let path = check.path("value");
    let location = check.reference(&path, None);
    for (round, bytes) in [&b"a first, longer value"[..], b"second"]
        .into_iter()
        .enumerate()
    {
        let what = format!("put #{round} of `{path}`");
        if let Err(error) = backend
            .put(&path, &SecretValue::copy_from_slice(bytes))
            .await
        {
            check.unexpected_error(&what, &error);
        }
        let document = check.fetch_ok(&location).await;
        check.expect_bytes(
            &format!("the value after {what}"),
            document.value.expose(),
            bytes,
        );
    }
}

/// (`list`) [`Backend::list`] returns full paths, sorted, every one under
/// the prefix asked for, including every path seeded there.
pub async fn list_is_sorted_and_complete(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("list_is_sorted_and_complete", backend, seeder, prefix);
    let seeded = [check.path("b"), check.path("a"), check.path("c")];
    for path in &seeded {
        check.seed(path, b"listed").await;
    }
    let list_prefix = check.path("");
    let listed = backend.list(&list_prefix).await.unwrap_or_else(|error| {
        check.unexpected_error(&format!("list of `{list_prefix}`"), &error)
    });
    if !listed.is_sorted() {
        check.fail(format_args!(
            "list of `{list_prefix}` is not sorted: {listed:?}"
        ));
    }
    if let Some(outside) = listed.iter().find(|path| !path.starts_with(&list_prefix)) {
        check.fail(format_args!(
            "list of `{list_prefix}` returned `{outside}`, which is not under it"
        ));
    }
    for path in &seeded {
        if !listed.contains(path) {
            check.fail(format_args!(
                "list of `{list_prefix}` misses `{path}`: {listed:?}"
            ));
        }
    }
}

/// (`delete`) After [`Backend::delete`], a fetch is
/// [`ErrorKind::NotFound`]; deleting a missing path is `NotFound` too.
pub async fn delete_removes(backend: &dyn Backend, seeder: &dyn Seeder, prefix: &str) {
    let check = Check::new("delete_removes", backend, seeder, prefix);
    let path = check.path("value");
    check.seed(&path, b"to be deleted").await;
    if let Err(error) = backend.delete(&path).await {
        check.unexpected_error(&format!("delete of `{path}`"), &error);
    }
    let location = check.reference(&path, None);
    check.expect_error(
        "fetch after delete",
        backend.fetch(&location).await,
        ErrorKind::NotFound,
    );
    check.expect_error(
        "a second delete of the same path",
        backend.delete(&path).await,
        ErrorKind::NotFound,
    );
}

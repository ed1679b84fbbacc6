//! The shared conformance suite, run against a fresh store.

mod common;

#[tokio::test]
async fn conformance() {
    let fixture = common::Fixture::new();
    let backend = fixture.backend();
    hushbox_testkit::run_all(&backend, &hushbox_testkit::PutSeeder(&backend)).await;
}

//! Marks the tests that need a PostgreSQL server (`EFTCLOUD_TEST_DATABASE_URL`) or NATS
//! (`EFTCLOUD_TEST_NATS_URL`) as ignored, with the reason, when their variable is not set, so a
//! run without them reports "N ignored" instead of counting tests that ran nothing as passed.
//! `.ci/run` sets both.

fn main() {
    for (var, cfg) in [
        ("EFTCLOUD_TEST_DATABASE_URL", "eftcloud_test_postgres"),
        ("EFTCLOUD_TEST_NATS_URL", "eftcloud_test_nats"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

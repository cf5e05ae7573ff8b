//! The bundled apps against the contract: `runner verify` for every app and every supported
//! scenario, `runner list`, and a broken app that must fail verification readably. These
//! start real apps and PostgreSQL; they run as root like the probe tests.

mod common;

use std::path::Path;

use common::*;

/// The twelve bundled apps.
const APPS: [&str; 12] = [
    "flask",
    "flask-restful",
    "django",
    "django-drf",
    "fastapi",
    "aquilia",
    "sanic",
    "tornado",
    "robyn",
    "rupy",
    "mrhttp",
    "axum",
];

fn verify(app: &str) {
    let _machine = exclusive();
    let output = runner()
        .args(["verify", app])
        .output()
        .expect("runner runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "runner verify {app} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

macro_rules! verify_tests {
    ($($test:ident => $app:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                verify($app);
            }
        )*
    };
}

verify_tests! {
    verify_flask => "flask",
    verify_flask_restful => "flask-restful",
    verify_django => "django",
    verify_django_drf => "django-drf",
    verify_fastapi => "fastapi",
    verify_aquilia => "aquilia",
    verify_sanic => "sanic",
    verify_tornado => "tornado",
    verify_robyn => "robyn",
    verify_rupy => "rupy",
    verify_mrhttp => "mrhttp",
    verify_axum => "axum",
}

#[test]
fn every_app_folder_is_verified_here() {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps");
    let mut found: Vec<String> = std::fs::read_dir(&apps)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("app.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = APPS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn list_shows_the_matrix_with_reasons() {
    let output = runner().args(["list", "--json"]).output().unwrap();
    assert!(output.status.success());
    let matrix: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let apps = matrix.as_array().unwrap();
    assert_eq!(apps.len(), APPS.len());
    for app in apps {
        let scenarios = app["scenarios"].as_object().unwrap();
        assert!(scenarios.len() >= 19);
        assert_eq!(scenarios["ping"]["supported"], true, "{}", app["app"]);
        for (name, cell) in scenarios {
            if cell["supported"] == false {
                assert!(
                    cell["reason"].as_str().is_some_and(|r| r.len() > 10),
                    "{} {name}: an unsupported scenario needs a reason",
                    app["app"]
                );
            }
        }
    }
    let text = runner().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("axum") && text.contains("ping"));
}

#[test]
fn a_broken_app_fails_verification_readably() {
    let _machine = exclusive();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken-app/app.toml");
    let output = runner().arg("verify").arg(&manifest).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a broken app must not pass:\n{stdout}"
    );
    assert!(
        stdout.contains("FAIL") && stdout.contains("body `PONG` (expected pong)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("message is \"hi\" (expected \"hello\")"),
        "{stdout}"
    );
    assert!(stdout.contains("expected result 2666466670000"), "{stdout}");
    assert!(
        stdout.contains("no Date header") || stdout.contains("Date header changes"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_app_is_one_clear_line() {
    let output = runner().args(["verify", "no-such-app"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no app `no-such-app`"), "{stderr}");
}

//! `runner verify`: checks an app against the scenario contract, TechEmpower-style: status,
//! content type, body shape and values, 404 and 400 handling, byte counts and digests,
//! WebSocket echo, database effects, idempotent upsert, and a changing Date header.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{http, postgres::Postgres, scenarios::Scenario};
use crate::load::request::hex;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The exact size of GET /stream.
pub const STREAM_BYTES: usize = 10 * 1024 * 1024;

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    pub scenario: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

struct Checker<'a> {
    addr: SocketAddr,
    scenario: &'a str,
    db: Option<&'a str>,
    out: Vec<Check>,
}

type R<T> = Result<T, String>;

impl Checker<'_> {
    fn record(&mut self, check: &str, result: R<String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.out.push(Check {
            scenario: self.scenario.into(),
            check: check.into(),
            ok,
            detail,
        });
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> R<http::Response> {
        http::request(self.addr, method.clone(), path, headers, body, TIMEOUT)
            .map_err(|e| format!("{method} {path}: {}", error_chain(&e)))
    }

    fn get(&self, path: &str) -> R<http::Response> {
        self.send(Method::GET, path, &[], Bytes::new())
    }

    fn json_request(&self, method: Method, path: &str, body: &Value) -> R<http::Response> {
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        )
    }

    fn sql(&self, query: &str) -> R<String> {
        let url = self.db.ok_or("no database to check against")?;
        Postgres::query(url, query).map_err(|e| e.to_string())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn expect_status(r: &http::Response, status: u16) -> R<()> {
    if r.status.as_u16() == status {
        Ok(())
    } else {
        Err(format!(
            "status {} (expected {status}); body: {}",
            r.status.as_u16(),
            preview(&r.body)
        ))
    }
}

fn expect_json(r: &http::Response) -> R<Value> {
    if !r.content_type().starts_with("application/json") {
        return Err(format!(
            "content type `{}` (expected application/json)",
            r.content_type()
        ));
    }
    r.json()
        .ok_or_else(|| format!("body is not JSON: {}", preview(&r.body)))
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    if body.len() > 120 {
        format!("{text}...")
    } else {
        text
    }
}

fn field<'a>(v: &'a Value, key: &str) -> R<&'a Value> {
    v.get(key).ok_or_else(|| format!("missing `{key}` in {v}"))
}

fn expect_item(v: &Value) -> R<i64> {
    for key in ["id", "name", "description", "price", "created_at"] {
        field(v, key)?;
    }
    if !v["price"].is_number() {
        return Err(format!("price is not a number: {}", v["price"]));
    }
    iso_utc(
        v["created_at"]
            .as_str()
            .ok_or("created_at is not a string")?,
    )?;
    v["id"]
        .as_i64()
        .ok_or_else(|| format!("id is not an integer: {}", v["id"]))
}

/// Parses an ISO-8601 timestamp with a UTC offset (Z or +00:00).
fn iso_utc(text: &str) -> R<std::time::SystemTime> {
    let normal = text.replace("+00:00", "Z");
    humantime::parse_rfc3339_weak(&normal)
        .map_err(|_| format!("`{text}` is not an ISO-8601 UTC timestamp"))
}

/// Σ i*i for i < n, mod 2^64.
pub fn cpu_result(n: u64) -> u64 {
    (0..n).fold(0u64, |acc, i| acc.wrapping_add(i.wrapping_mul(i)))
}

/// Runs every check of `scenario` against the app at `addr`.
pub fn check(addr: SocketAddr, scenario: &Scenario, db: Option<&str>) -> Vec<Check> {
    let mut c = Checker {
        addr,
        scenario: &scenario.name,
        db,
        out: Vec::new(),
    };
    match scenario.verify.as_str() {
        "ping" => {
            let r = c.get("/ping").and_then(|r| {
                expect_status(&r, 200)?;
                if !r.content_type().starts_with("text/plain") {
                    return Err(format!(
                        "content type `{}` (expected text/plain)",
                        r.content_type()
                    ));
                }
                if r.body.as_ref() != b"pong" {
                    return Err(format!("body `{}` (expected pong)", preview(&r.body)));
                }
                Ok("200 text/plain pong".into())
            });
            c.record("GET /ping", r);
        }
        "json" => {
            let r = c.get("/json").and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                if v["message"] != "hello" {
                    return Err(format!("message is {} (expected \"hello\")", v["message"]));
                }
                let ts = iso_utc(field(&v, "ts")?.as_str().ok_or("ts is not a string")?)?;
                let skew = ts
                    .duration_since(std::time::SystemTime::now())
                    .or_else(|e| Ok::<_, String>(e.duration()))?;
                if skew > Duration::from_secs(120) {
                    return Err(format!("ts {} is not the current time", v["ts"]));
                }
                Ok(format!("message hello, ts {}", v["ts"]))
            });
            c.record("GET /json", r);
        }
        "db-read" => {
            let r = c.get("/db-read?id=7").and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                let id = expect_item(&v)?;
                if id != 7 || v["name"] != "item-7" {
                    return Err(format!("row 7 reads as {v}"));
                }
                Ok("row 7 with all five fields".into())
            });
            c.record("existing id", r);
            let r = c.get("/db-read?id=9999999").and_then(|r| {
                expect_status(&r, 404)?;
                let v = expect_json(&r)?;
                if v["error"] != "not found" {
                    return Err(format!("body {v} (expected {{\"error\": \"not found\"}})"));
                }
                Ok("404 not found".into())
            });
            c.record("missing id -> 404", r);
            let r = c
                .get("/db-read?id=abc")
                .and_then(|r| expect_status(&r, 400).map(|_| "400".into()));
            c.record("non-integer id -> 400", r);
        }
        "db-write" => {
            let r = (|| {
                let before: i64 = c
                    .sql("SELECT count(*) FROM items")?
                    .parse()
                    .map_err(|_| "bad count")?;
                let name = format!("verify-{}", fastrand::u64(..));
                let body =
                    serde_json::json!({"name": name, "description": "verify", "price": 1.25});
                let r = c.json_request(Method::POST, "/db-write", &body)?;
                expect_status(&r, 201)?;
                let v = expect_json(&r)?;
                let id = v["id"]
                    .as_i64()
                    .ok_or_else(|| format!("no integer id in {v}"))?;
                let after: i64 = c
                    .sql("SELECT count(*) FROM items")?
                    .parse()
                    .map_err(|_| "bad count")?;
                let stored = c.sql(&format!("SELECT name FROM items WHERE id = {id}"))?;
                if after != before + 1 || stored != name {
                    return Err(format!(
                        "rows {before} -> {after}, row {id} holds `{stored}`"
                    ));
                }
                Ok(format!("201 id {id}; rows {before} -> {after}"))
            })();
            c.record("row is written", r);
        }
        "upload" => {
            let mut data = vec![0u8; 5 * 1024 * 1024 + 17];
            fastrand::fill(&mut data);
            let digest = hex(&Sha256::digest(&data));
            let size = data.len();
            let r = c
                .send(
                    Method::POST,
                    "/upload",
                    &[("content-type", "application/octet-stream")],
                    Bytes::from(data),
                )
                .and_then(|r| {
                    expect_status(&r, 200)?;
                    let v = expect_json(&r)?;
                    if v["sha256"] != digest.as_str() || v["size"].as_u64() != Some(size as u64) {
                        return Err(format!("got {v}, expected sha256 {digest} size {size}"));
                    }
                    Ok(format!("sha256 and size of {size} random bytes"))
                });
            c.record("sha256 of the bytes read", r);
        }
        "stream" => {
            let r = c.get("/stream").and_then(|r| {
                expect_status(&r, 200)?;
                if !r.content_type().starts_with("application/octet-stream") {
                    return Err(format!("content type `{}`", r.content_type()));
                }
                if r.body.len() != STREAM_BYTES {
                    return Err(format!("{} bytes (expected {STREAM_BYTES})", r.body.len()));
                }
                if r.body.iter().any(|&b| b != 0) {
                    return Err("the bytes are not all zero".into());
                }
                Ok(format!("{STREAM_BYTES} zero bytes"))
            });
            c.record("GET /stream", r);
        }
        "ws-echo" => {
            let message = format!("echo-{}", fastrand::u64(..));
            let r = http::websocket_echo(addr, scenario.path(), &message, TIMEOUT)
                .map_err(|e| error_chain(&e))
                .and_then(|got| {
                    if got == message {
                        Ok("text frame echoed".into())
                    } else {
                        Err(format!("sent `{message}`, got `{got}`"))
                    }
                });
            c.record("echo", r);
        }
        "cpu" => {
            let r = c.get("/cpu?n=20000").and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                let expected = cpu_result(20000);
                if v["n"] != 20000 || v["result"].as_u64() != Some(expected) {
                    return Err(format!("got {v}, expected result {expected}"));
                }
                Ok(format!("result {expected}"))
            });
            c.record("GET /cpu?n=20000", r);
        }
        "sleep" => {
            let path = scenario.path().to_string();
            let mode = path.rsplit('/').next().unwrap_or("").to_string();
            let started = std::time::Instant::now();
            let r = c.get(&path).and_then(|r| {
                let took = started.elapsed();
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                if v["slept_ms"] != 50 || v["mode"] != mode.as_str() {
                    return Err(format!("got {v}, expected slept_ms 50 and mode {mode}"));
                }
                if took < Duration::from_millis(45) {
                    return Err(format!("answered in {took:?}: it did not sleep 50 ms"));
                }
                Ok(format!("{mode}, {} ms", took.as_millis()))
            });
            c.record(&format!("GET {path}"), r);
        }
        "sqlite-read" => {
            let path = scenario.path().replace("{1..2000}", "7");
            let r = c.get(&path).and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                if v["id"] != 7 || !v["value"].is_i64() {
                    return Err(format!("got {v}"));
                }
                Ok(format!("value {}", v["value"]))
            });
            c.record(&format!("GET {path}"), r);
        }
        "sqlite-write" => {
            let path = scenario.path().replace("{1..2000}", "11");
            let r = (|| {
                let value = |r: http::Response| -> R<i64> {
                    expect_status(&r, 200)?;
                    let v = expect_json(&r)?;
                    v["value"]
                        .as_i64()
                        .filter(|_| v["id"] == 11)
                        .ok_or_else(|| format!("got {v}"))
                };
                let a = value(c.send(Method::POST, &path, &[], Bytes::new())?)?;
                let b = value(c.send(Method::POST, &path, &[], Bytes::new())?)?;
                if b != a + 1 {
                    return Err(format!(
                        "two writes gave {a} then {b}; expected an increment of 1"
                    ));
                }
                Ok(format!("{a} -> {b}"))
            })();
            c.record(&format!("POST {path} increments"), r);
        }
        "crud" => crud(&mut c),
        "io-intensive" => {
            let r = c.send(Method::POST, "/io-intensive", &[], Bytes::new()).and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                let expected = serde_json::json!({"file_bytes": 65536, "inserted": 10, "updated": 5, "deleted": 10});
                if !crate::load::request::json_contains(&v, &expected) {
                    return Err(format!("got {v}, expected {expected}"));
                }
                Ok("file 65536 bytes; 10 inserted, 5 updated, 10 deleted".into())
            });
            c.record("POST /io-intensive", r);
        }
        other => c.record(
            "known check",
            Err(format!("scenarios.toml names an unknown check `{other}`")),
        ),
    }
    c.out
}

fn crud(c: &mut Checker<'_>) {
    let r = c.get("/").and_then(|r| {
        expect_status(&r, 200)?;
        let v = expect_json(&r)?;
        if v["status"] != "ok" {
            return Err(format!("got {v}"));
        }
        Ok("{\"status\": \"ok\"}".into())
    });
    c.record("GET / health", r);
    let r = c.get("/items?limit=5&offset=10").and_then(|r| {
        expect_status(&r, 200)?;
        let v = expect_json(&r)?;
        let items = v
            .as_array()
            .ok_or_else(|| format!("not an array: {}", preview(&r.body)))?;
        let ids: Vec<i64> = items.iter().map(expect_item).collect::<R<_>>()?;
        if ids != [11, 12, 13, 14, 15] {
            return Err(format!("ids {ids:?} (expected 11..15)"));
        }
        Ok("5 items from offset 10".into())
    });
    c.record("GET /items?limit&offset", r);
    let r = c.get("/items/3").and_then(|r| {
        expect_status(&r, 200)?;
        let id = expect_item(&expect_json(&r)?)?;
        if id != 3 {
            return Err(format!("id {id}"));
        }
        Ok("item 3".into())
    });
    c.record("GET /items/{id}", r);
    let r = c
        .get("/items/9999999")
        .and_then(|r| expect_status(&r, 404).map(|_| "404".into()));
    c.record("GET /items/{missing} -> 404", r);
    let name = format!("verify-crud-{}", fastrand::u64(..));
    let created = c
        .json_request(
            Method::POST,
            "/items",
            &serde_json::json!({"name": name, "description": "d", "price": 2.5}),
        )
        .and_then(|r| {
            expect_status(&r, 201)?;
            let v = expect_json(&r)?;
            let id = expect_item(&v)?;
            if v["name"] != name.as_str() {
                return Err(format!("created {v}"));
            }
            Ok(id)
        });
    c.record(
        "POST /items -> 201",
        created.clone().map(|id| format!("id {id}")),
    );
    if let Ok(id) = created {
        let r = c
            .json_request(
                Method::PUT,
                &format!("/items/{id}"),
                &serde_json::json!({"description": "changed", "price": 3.5}),
            )
            .and_then(|r| {
                expect_status(&r, 200)?;
                let v = expect_json(&r)?;
                if v["description"] != "changed" || v["price"] != 3.5 || v["name"] != name.as_str()
                {
                    return Err(format!("updated to {v}"));
                }
                Ok("description and price changed".into())
            });
        c.record("PUT /items/{id}", r);
    }
    let upsert_name = format!("verify-upsert-{}", fastrand::u64(..));
    let r = (|| {
        let mut ids = Vec::new();
        for price in [4.5, 5.5] {
            let r = c.json_request(
                Method::POST,
                "/upsert",
                &serde_json::json!({"name": upsert_name, "description": "u", "price": price}),
            )?;
            expect_status(&r, 200)?;
            let v = expect_json(&r)?;
            ids.push(expect_item(&v)?);
            if v["price"] != price {
                return Err(format!("upsert returned {v}"));
            }
        }
        if ids[0] != ids[1] {
            return Err(format!("the same name got ids {ids:?}"));
        }
        if c.db.is_some() {
            let rows = c.sql(&format!(
                "SELECT count(*) FROM items WHERE name = '{upsert_name}'"
            ))?;
            if rows != "1" {
                return Err(format!("{rows} rows with the name"));
            }
        }
        Ok(format!("same id {} twice, one row", ids[0]))
    })();
    c.record("POST /upsert is idempotent", r);
}

/// The Date header is present and changes between two requests a second apart.
pub fn date_header(addr: SocketAddr, path: &str) -> Check {
    let date = |r: &http::Response| {
        r.headers
            .get("date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let result = (|| {
        let a = http::get(addr, path, TIMEOUT).map_err(|e| error_chain(&e))?;
        std::thread::sleep(Duration::from_millis(1100));
        let b = http::get(addr, path, TIMEOUT).map_err(|e| error_chain(&e))?;
        match (date(&a), date(&b)) {
            (Some(x), Some(y)) if x != y => Ok(format!("`{x}` then `{y}`")),
            (Some(x), Some(_)) => Err(format!("stayed `{x}` for over a second")),
            _ => Err("no Date header".to_string()),
        }
    })();
    Check {
        scenario: "(all)".into(),
        check: "Date header changes".into(),
        ok: result.is_ok(),
        detail: result.unwrap_or_else(|e| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_result_wraps_mod_2_64() {
        assert_eq!(cpu_result(4), 1 + 4 + 9);
        assert_eq!(
            cpu_result(20000),
            (0..20000u128).map(|i| i * i).sum::<u128>() as u64
        );
        let big = 3_000_000u64;
        assert_eq!(
            cpu_result(big),
            ((0..big as u128).map(|i| i * i).sum::<u128>() % (1u128 << 64)) as u64
        );
    }

    #[test]
    fn timestamps_must_be_utc_iso() {
        assert!(iso_utc("2026-11-23T08:00:00.123456Z").is_ok());
        assert!(iso_utc("2026-11-23T08:00:00+00:00").is_ok());
        assert!(iso_utc("yesterday").is_err());
    }
}

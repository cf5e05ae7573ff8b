//! The scenario contract (apps/README.md) on axum. Configured by HOST, PORT, WORKERS,
//! DATABASE_URL, DB_POOL_SIZE and SQLITE_PATH.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        Path, Query, State,
    },
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct App {
    db: Option<Pool>,
    sqlite: String,
}

type Shared = State<Arc<App>>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn internal<E: std::fmt::Display>(e: E) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

fn now_iso() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

async fn ping() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain")], "pong")
}

async fn json_hello() -> Json<Value> {
    Json(json!({ "message": "hello", "ts": now_iso() }))
}

const ITEM_COLUMNS: &str = "id, name, description, price, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn item(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, i32>(0),
        "name": row.get::<_, String>(1),
        "description": row.get::<_, String>(2),
        "price": row.get::<_, f64>(3),
        "created_at": row.get::<_, String>(4),
    })
}

async fn db(app: &App) -> Result<deadpool_postgres::Object, Response> {
    let pool = app
        .db
        .as_ref()
        .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "no DATABASE_URL"))?;
    pool.get().await.map_err(internal)
}

async fn one_item(app: &App, id: i32) -> Response {
    let client = match db(app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1");
    match client.query_opt(&sql, &[&id]).await {
        Ok(Some(row)) => Json(item(&row)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => internal(e),
    }
}

async fn db_read(
    State(app): Shared,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    match q.get("id").and_then(|v| v.parse::<i32>().ok()) {
        Some(id) => one_item(&app, id).await,
        None => error(StatusCode::BAD_REQUEST, "id must be an integer"),
    }
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
    #[serde(default)]
    description: String,
    price: f64,
}

async fn db_write(State(app): Shared, Json(body): Json<NewItem>) -> Response {
    let client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match client
        .query_one(
            "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id",
            &[&body.name, &body.description, &body.price],
        )
        .await
    {
        Ok(row) => (
            StatusCode::CREATED,
            Json(json!({ "id": row.get::<_, i32>(0) })),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn upload(body: Body) -> Response {
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(data) => {
                size += data.len() as u64;
                hasher.update(&data);
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Json(json!({ "sha256": digest, "size": size })).into_response()
}

async fn stream() -> Response {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let chunks =
        futures_util::stream::iter((0..160).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(chunks),
    )
        .into_response()
}

async fn ws_echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(text) = msg {
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        }
    })
}

async fn cpu(Query(q): Query<std::collections::HashMap<String, String>>) -> Response {
    let Some(n) = q.get("n").and_then(|v| v.parse::<u64>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "n must be an integer");
    };
    let result = (0..n).fold(0u64, |acc, i| acc.wrapping_add(i.wrapping_mul(i)));
    Json(json!({ "n": n, "result": result })).into_response()
}

fn slept(mode: &str) -> Json<Value> {
    Json(json!({ "slept_ms": 50, "mode": mode }))
}

async fn sleep_async() -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    slept("async")
}

async fn sleep_threadpool() -> Json<Value> {
    let _ = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50))).await;
    slept("threadpool")
}

async fn sleep_blocking() -> Json<Value> {
    std::thread::sleep(Duration::from_millis(50)); // blocks a runtime worker thread
    slept("blocking")
}

fn sqlite_open(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn sqlite_init(path: &str) -> rusqlite::Result<()> {
    let conn = sqlite_open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT OR IGNORE INTO counters (id, value) SELECT i, 0 FROM n;",
    )
}

fn sqlite_op(path: &str, id: i64, write: bool) -> Result<Option<i64>, rusqlite::Error> {
    let conn = sqlite_open(path)?;
    if write {
        conn.execute("UPDATE counters SET value = value + 1 WHERE id = ?1", [id])?;
    }
    match conn.query_row("SELECT value FROM counters WHERE id = ?1", [id], |r| {
        r.get(0)
    }) {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

fn sqlite_response(id: i64, result: Result<Option<i64>, rusqlite::Error>) -> Response {
    match result {
        Ok(Some(value)) => Json(json!({ "id": id, "value": value })).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => internal(e),
    }
}

async fn sqlite(
    State(app): Shared,
    Path((variant, id)): Path<(String, i64)>,
    write: bool,
) -> Response {
    let path = app.sqlite.clone();
    let result = match variant.as_str() {
        "blocking" => sqlite_op(&path, id, write), // blocks a runtime worker thread
        "async" | "threadpool" => {
            match tokio::task::spawn_blocking(move || sqlite_op(&path, id, write)).await {
                Ok(r) => r,
                Err(e) => return internal(e),
            }
        }
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    sqlite_response(id, result)
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn list_items(State(app): Shared, Query(p): Query<Page>) -> Response {
    let client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let limit = p.limit.unwrap_or(10).clamp(0, 100);
    let offset = p.offset.unwrap_or(0).max(0);
    let sql = format!("SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2");
    match client.query(&sql, &[&limit, &offset]).await {
        Ok(rows) => Json(Value::Array(rows.iter().map(item).collect())).into_response(),
        Err(e) => internal(e),
    }
}

async fn get_item(State(app): Shared, Path(id): Path<i32>) -> Response {
    one_item(&app, id).await
}

async fn create_item(State(app): Shared, Json(body): Json<NewItem>) -> Response {
    let client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sql = format!(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}"
    );
    match client
        .query_one(&sql, &[&body.name, &body.description, &body.price])
        .await
    {
        Ok(row) => (StatusCode::CREATED, Json(item(&row))).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct ItemUpdate {
    name: Option<String>,
    description: Option<String>,
    price: Option<f64>,
}

async fn update_item(
    State(app): Shared,
    Path(id): Path<i32>,
    Json(body): Json<ItemUpdate>,
) -> Response {
    let client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sql = format!(
        "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description), price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}"
    );
    match client
        .query_opt(&sql, &[&id, &body.name, &body.description, &body.price])
        .await
    {
        Ok(Some(row)) => Json(item(&row)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => internal(e),
    }
}

async fn upsert(State(app): Shared, Json(body): Json<NewItem>) -> Response {
    let client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let sql = format!(
        "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price \
         RETURNING {ITEM_COLUMNS}"
    );
    match client
        .query_one(&sql, &[&body.name, &body.description, &body.price])
        .await
    {
        Ok(row) => Json(item(&row)).into_response(),
        Err(e) => internal(e),
    }
}

async fn io_intensive(State(app): Shared) -> Response {
    let request_id = format!("{}-{}", std::process::id(), fastid());
    let path = std::env::temp_dir().join(format!("io-{request_id}.bin"));
    let data = vec![7u8; 65536];
    if let Err(e) = tokio::fs::write(&path, &data).await {
        return internal(e);
    }
    let read = tokio::fs::read(&path).await;
    let _ = tokio::fs::remove_file(&path).await;
    let file_bytes = match read {
        Ok(bytes) => bytes.len(),
        Err(e) => return internal(e),
    };
    let mut client = match db(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result: Result<(u64, u64, u64), tokio_postgres::Error> = async {
        let tx = client.transaction().await?;
        let mut inserted = 0;
        for n in 0..10i32 {
            inserted += tx
                .execute(
                    "INSERT INTO io_log (request_id, n) VALUES ($1, $2)",
                    &[&request_id, &n],
                )
                .await?;
        }
        let updated = tx
            .execute(
                "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n < 5",
                &[&request_id],
            )
            .await?;
        let deleted = tx
            .execute("DELETE FROM io_log WHERE request_id = $1", &[&request_id])
            .await?;
        tx.commit().await?;
        Ok((inserted, updated, deleted))
    }
    .await;
    match result {
        Ok((inserted, updated, deleted)) => Json(json!({
            "file_bytes": file_bytes, "inserted": inserted, "updated": updated, "deleted": deleted
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

fn fastid() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn main() {
    let workers: usize = env("WORKERS")
        .and_then(|w| w.parse().ok())
        .unwrap_or(1)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(serve());
}

async fn serve() {
    let host = env("HOST").unwrap_or_else(|| "127.0.0.1".into());
    let port = env("PORT").unwrap_or_else(|| "8080".into());
    let sqlite_path = env("SQLITE_PATH").unwrap_or_else(|| "/tmp/axum-app.db".into());
    sqlite_init(&sqlite_path).expect("initialising SQLITE_PATH");
    let db = env("DATABASE_URL").map(|url| {
        let config: tokio_postgres::Config = url.parse().expect("DATABASE_URL");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let size = env("DB_POOL_SIZE")
            .and_then(|s| s.parse().ok())
            .unwrap_or(16);
        Pool::builder(manager)
            .max_size(size)
            .build()
            .expect("a database pool")
    });
    let app = Arc::new(App {
        db,
        sqlite: sqlite_path,
    });
    let router = Router::new()
        .route("/ping", get(ping))
        .route("/json", get(json_hello))
        .route("/db-read", get(db_read))
        .route("/db-write", post(db_write))
        .route("/upload", post(upload))
        .route("/stream", get(stream))
        .route("/ws-echo", get(ws_echo))
        .route("/cpu", get(cpu))
        .route("/sleep/async", get(sleep_async))
        .route("/sleep/threadpool", get(sleep_threadpool))
        .route("/sleep/blocking", get(sleep_blocking))
        .route(
            "/sqlite/{variant}/read/{id}",
            get(|s: Shared, p: Path<(String, i64)>| sqlite(s, p, false)),
        )
        .route(
            "/sqlite/{variant}/write/{id}",
            post(|s: Shared, p: Path<(String, i64)>| sqlite(s, p, true)),
        )
        .route("/", get(health))
        .route("/items", get(list_items).post(create_item))
        .route("/items/{id}", get(get_item).put(update_item))
        .route("/upsert", post(upsert))
        .route("/io-intensive", post(io_intensive))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}"))
        .await
        .expect("binding HOST:PORT");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
        })
        .await
        .expect("serving");
}

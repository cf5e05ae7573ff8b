"""Every SQL statement the apps run, as text, once.

PostgreSQL statements are written with PostgreSQL's own $1..$n placeholders, as asyncpg
takes them (and as apps/axum has them, word for word). psycopg2 and Django's cursor take %s
placeholders in the order they appear: they run `cur.execute(*psycopg(STATEMENT, args...))`.
The schema they work on is apps/shared/init.sql.
"""

import functools
import re

# ---------------------------------------------------------------- PostgreSQL: items

ITEM_FIELDS = ("id", "name", "description", "price", "created_at")
ITEM_COLUMNS = ", ".join(ITEM_FIELDS)

ITEM_GET = f"SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"
ITEM_LIST = f"SELECT {ITEM_COLUMNS} FROM items ORDER BY id LIMIT $1 OFFSET $2"
ITEM_INSERT_ID = "INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING id"
ITEM_INSERT = f"INSERT INTO items (name, description, price) VALUES ($1, $2, $3) RETURNING {ITEM_COLUMNS}"
# Arguments: id, then name, description, price (None keeps the column as it is).
ITEM_UPDATE = (
    "UPDATE items SET name = COALESCE($2, name), description = COALESCE($3, description),"
    f" price = COALESCE($4, price) WHERE id = $1 RETURNING {ITEM_COLUMNS}"
)
ITEM_UPSERT = (
    "INSERT INTO items (name, description, price) VALUES ($1, $2, $3)"
    " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price"
    f" RETURNING {ITEM_COLUMNS}"
)

# ---------------------------------------------------------------- PostgreSQL: io_log (POST /io-intensive)

# One transaction, one request_id: insert 10 rows, update 5 of them, delete the 10.
IO_LOG_INSERT = "INSERT INTO io_log (request_id, n, note) SELECT $1, g, 'inserted' FROM generate_series(1, 10) AS g"
IO_LOG_UPDATE = "UPDATE io_log SET note = 'updated' WHERE request_id = $1 AND n <= 5"
IO_LOG_DELETE = "DELETE FROM io_log WHERE request_id = $1"

# ---------------------------------------------------------------- SQLite: counters

SQLITE_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"
SQLITE_SEED = "INSERT OR IGNORE INTO counters (id, value) VALUES (?, 0)"  # ids 1..2000
SQLITE_ROWS = 2000
SQLITE_READ = "SELECT id, value FROM counters WHERE id = ?"
# On an autocommit connection (all of the apps'), this one statement is its own transaction:
# it is committed when fetchall() finishes it, and no write lock is ever held across an await
# (an open transaction waiting for a blocked loop would stall every other writer).
SQLITE_WRITE = "UPDATE counters SET value = value + 1 WHERE id = ? RETURNING id, value"

# ---------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=None)
def _format_style(sql):
    order = tuple(int(n) - 1 for n in _PLACEHOLDER.findall(sql))
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%")), order


def psycopg(sql, *args):
    """A $1..$n statement and its arguments (in $ order) as a driver with %s placeholders
    takes them: (text, arguments in the order their placeholders appear)."""
    text, order = _format_style(sql)
    return text, tuple(args[i] for i in order)

-- Schema and seed rows for the apps' PostgreSQL database. Loaded by runner into a fresh
-- database before an app starts.
CREATE TABLE items (
    id          SERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    price       DOUBLE PRECISION NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO items (name, description, price, created_at)
SELECT 'item-' || i, 'seed item ' || i, (i % 100) + 0.99, TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL '1 minute'
FROM generate_series(1, 1000) AS i;

-- Scratch rows for POST /io-intensive: one transaction inserts 10, updates 5, deletes 10.
CREATE TABLE io_log (
    id         SERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    n          INTEGER NOT NULL,
    note       TEXT NOT NULL DEFAULT ''
);

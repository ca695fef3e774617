-- Run once by the postgres image, on an empty data volume (/docker-entrypoint-initdb.d).
-- prefect: the Prefect server's database. tablewatch: the tw_ result tables (tablewatch creates
-- and migrates them itself). shop: an example source database with the two tables that
-- infra/monitors.yaml watches; point the monitors at your own database instead.
CREATE DATABASE prefect;
CREATE DATABASE tablewatch;
CREATE DATABASE shop;

\connect shop

CREATE TABLE IF NOT EXISTS payments (
    id          bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    amount      numeric(12, 2),
    latency_ms  double precision,
    country     text,
    method      text
);
CREATE INDEX IF NOT EXISTS payments_created_at ON payments (created_at);

CREATE TABLE IF NOT EXISTS orders (
    order_id     bigint PRIMARY KEY,
    order_date   date NOT NULL,
    items        integer,
    total        numeric(12, 2),
    discount     numeric(12, 2),
    channel      text
);
CREATE INDEX IF NOT EXISTS orders_order_date ON orders (order_date);

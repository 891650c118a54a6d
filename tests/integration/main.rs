mod bb8_postgres;
mod classify_postgres;
mod classify_sqlite;
mod deadpool_postgres;
mod drop_in;
mod harness_selftest;
mod sqlite_pools;
mod support;

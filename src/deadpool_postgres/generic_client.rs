//! deadpool-postgres's `GenericClient`, for this crate's [`Client`]: theirs is sealed and
//! implemented for their own `Client` type only, so code generic over it needs this one (the
//! same trait, method for method) to accept a pooled client of ours.

use async_trait::async_trait;
use tokio_postgres::types::{BorrowToSql, ToSql, Type};
use tokio_postgres::{Error, Row, RowStream, Statement, ToStatement};

use super::{Client, ClientWrapper, Transaction};

mod sealed {
    pub trait Sealed {}
}

/// Abstracts over a pooled client and a transaction, as deadpool-postgres's `GenericClient`:
/// the same methods (tokio-postgres's `GenericClient` without `client()`, plus the statement
/// cache's `prepare_cached` and `prepare_typed_cached`), implemented for [`Client`] and
/// [`Transaction`]. Sealed, as theirs.
#[async_trait]
pub trait GenericClient: Sync + sealed::Sealed {
    /// Like `Client::execute`.
    async fn execute<T>(&self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement + Sync + Send;

    /// Like `Client::execute_raw`.
    async fn execute_raw<P, I, T>(&self, statement: &T, params: I) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
        P: BorrowToSql,
        I: IntoIterator<Item = P> + Sync + Send,
        I::IntoIter: ExactSizeIterator;

    /// Like `Client::query`.
    async fn query<T>(&self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement + Sync + Send;

    /// Like `Client::query_one`.
    async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement + Sync + Send;

    /// Like `Client::query_opt`.
    async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement + Sync + Send;

    /// Like `Client::query_raw`.
    async fn query_raw<T, P, I>(&self, statement: &T, params: I) -> Result<RowStream, Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
        P: BorrowToSql,
        I: IntoIterator<Item = P> + Sync + Send,
        I::IntoIter: ExactSizeIterator;

    /// Like `Client::prepare`.
    async fn prepare(&self, query: &str) -> Result<Statement, Error>;

    /// Like `Client::prepare_typed`.
    async fn prepare_typed(
        &self,
        query: &str,
        parameter_types: &[Type],
    ) -> Result<Statement, Error>;

    /// Like [`ClientWrapper::prepare_cached`].
    async fn prepare_cached(&self, query: &str) -> Result<Statement, Error>;

    /// Like [`ClientWrapper::prepare_typed_cached`].
    async fn prepare_typed_cached(&self, query: &str, types: &[Type]) -> Result<Statement, Error>;

    /// Like `Client::transaction`.
    async fn transaction(&mut self) -> Result<Transaction<'_>, Error>;

    /// Like `Client::batch_execute`.
    async fn batch_execute(&self, query: &str) -> Result<(), Error>;
}

/// Implements [`GenericClient`] for `$type`, forwarding to the driver's `$driver` and to
/// deadpool-postgres's caching `$cached` (paths, not method calls: a method call would find
/// this trait's own method and recurse).
macro_rules! forward_generic_client {
    ($type:ty, $driver:ty, $cached:ty) => {
        impl sealed::Sealed for $type {}

        #[async_trait]
        impl GenericClient for $type {
            async fn execute<T>(
                &self,
                query: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                <$driver>::execute(self, query, params).await
            }

            async fn execute_raw<P, I, T>(&self, statement: &T, params: I) -> Result<u64, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
                P: BorrowToSql,
                I: IntoIterator<Item = P> + Sync + Send,
                I::IntoIter: ExactSizeIterator,
            {
                <$driver>::execute_raw(self, statement, params).await
            }

            async fn query<T>(
                &self,
                query: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                <$driver>::query(self, query, params).await
            }

            async fn query_one<T>(
                &self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                <$driver>::query_one(self, statement, params).await
            }

            async fn query_opt<T>(
                &self,
                statement: &T,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
            {
                <$driver>::query_opt(self, statement, params).await
            }

            async fn query_raw<T, P, I>(&self, statement: &T, params: I) -> Result<RowStream, Error>
            where
                T: ?Sized + ToStatement + Sync + Send,
                P: BorrowToSql,
                I: IntoIterator<Item = P> + Sync + Send,
                I::IntoIter: ExactSizeIterator,
            {
                <$driver>::query_raw(self, statement, params).await
            }

            async fn prepare(&self, query: &str) -> Result<Statement, Error> {
                <$driver>::prepare(self, query).await
            }

            async fn prepare_typed(
                &self,
                query: &str,
                parameter_types: &[Type],
            ) -> Result<Statement, Error> {
                <$driver>::prepare_typed(self, query, parameter_types).await
            }

            async fn prepare_cached(&self, query: &str) -> Result<Statement, Error> {
                <$cached>::prepare_cached(self, query).await
            }

            async fn prepare_typed_cached(
                &self,
                query: &str,
                types: &[Type],
            ) -> Result<Statement, Error> {
                <$cached>::prepare_typed_cached(self, query, types).await
            }

            async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
                <$cached>::transaction(self).await
            }

            async fn batch_execute(&self, query: &str) -> Result<(), Error> {
                <$driver>::batch_execute(self, query).await
            }
        }
    };
}

forward_generic_client!(Client, tokio_postgres::Client, ClientWrapper);
forward_generic_client!(
    Transaction<'_>,
    tokio_postgres::Transaction<'_>,
    Transaction<'_>
);

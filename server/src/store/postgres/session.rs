//! How [`PgStore`] reaches the database: connections driven by the store's own runtime, a
//! call that waits for its reply with a plain `block_on` on the calling thread, a closed
//! connection opened again on the next call, and the server lock taken by the writing
//! session of a server's store after every (re)connect.

use std::sync::{Mutex, MutexGuard};

use tokio_postgres::{Client, NoTls};

use super::{Conn, PgStore, SERVER_LOCK, backend, describe};
use crate::store::StoreError;

impl PgStore {
    /// Opens a new connection, driven by the store's own runtime.
    pub(super) fn connect(&self) -> Result<Client, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Backend("postgres store is closed".into()))?;
        let config = self.config.clone();
        // The socket needs the store runtime's reactor: connect on it, wait here.
        let connected = runtime.spawn(async move { config.connect(NoTls).await });
        let (client, connection) = futures::executor::block_on(connected)
            .map_err(|e| StoreError::Backend(e.to_string()))?
            .map_err(|e| {
                StoreError::Backend(format!("cannot connect to postgres: {}", describe(&e)))
            })?;
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// Runs `work` on the connection in `slot`, connecting first when it is closed.
    pub(super) fn with<T>(
        &self,
        slot: &Mutex<Option<Conn>>,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard: MutexGuard<'_, Option<Conn>> =
            slot.lock().unwrap_or_else(|e| e.into_inner());
        let conn = match guard.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                let client = self.connect()?;
                if self.exclusive && std::ptr::eq(slot, &self.writer) {
                    futures::executor::block_on(claim(&client))?;
                }
                Conn {
                    client,
                    statements: None,
                }
            }
        };
        let conn = guard.insert(conn);
        futures::executor::block_on(work(conn))
    }

    pub(super) fn with_writer<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(&self.writer, work)
    }

    /// Runs a read on the reading connection; a read that fails because the connection died
    /// under it (a database restart) is run once more on a new connection.
    pub(super) fn read<T>(
        &self,
        work: impl AsyncFn(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.with(&self.reader, async |c| work(&mut c.client).await) {
            Err(_) if self.closed(&self.reader) => {
                self.with(&self.reader, async |c| work(&mut c.client).await)
            }
            result => result,
        }
    }

    /// Whether the connection in `slot` is gone (or was never opened).
    pub(super) fn closed(&self, slot: &Mutex<Option<Conn>>) -> bool {
        let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_none_or(|c| c.client.is_closed())
    }
}

/// Takes [`SERVER_LOCK`] for the session of `client`.
async fn claim(client: &Client) -> Result<(), StoreError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SERVER_LOCK])
        .await
        .map_err(backend)?;
    let locked: bool = row.try_get(0).map_err(backend)?;
    if locked {
        Ok(())
    } else {
        Err(StoreError::Backend(
            "another mandate-server is using this database; several servers on one \
             database are not supported yet"
                .into(),
        ))
    }
}

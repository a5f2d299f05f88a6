//! A real server and agent pair on temp dirs, and the Workload API calls the scenarios make
//! as a workload (the bench process itself, matched by its uid).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mandate_integration::workload::{channel, with_header};
use mandate_integration::{Agent, Server};
use mandate_proto::types::Entry;
use mandate_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use mandate_proto::workload::{X509svidRequest, X509svidResponse};
use tokio::runtime::Runtime;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::admin::{Admin, MAX_MESSAGE, bulk};
use crate::stats::own_uid;

/// A server, one agent attested to it, and an admin client.
#[derive(Debug)]
pub(crate) struct Fixture {
    /// The server process.
    pub(crate) server: Server,
    /// The agent process.
    pub(crate) agent: Agent,
    /// The admin API of the server.
    pub(crate) admin: Admin,
    /// `unix:uid:<our uid>`: the selector that makes an entry ours.
    pub(crate) selector: String,
}

impl Fixture {
    /// Starts a server and an agent named `bench`.
    ///
    /// Fails when either does not come up.
    pub(crate) fn start(rt: &Runtime) -> Result<Self> {
        let server = Server::start()?;
        let agent = Agent::start(&server, "bench")?;
        let admin = rt.block_on(Admin::connect(&server.admin_socket))?;
        Ok(Self {
            server,
            agent,
            admin,
            selector: format!("unix:uid:{}", own_uid()?),
        })
    }

    /// Creates `count` entries `spiffe://example.org/bench/<prefix>/<i>` for this process under
    /// the agent, `concurrency` at a time.
    ///
    /// Fails when the server refuses one.
    pub(crate) async fn create_own_entries(
        &self,
        prefix: &str,
        count: usize,
        concurrency: usize,
    ) -> Result<Vec<Entry>> {
        let created = Arc::new(Mutex::new(Vec::with_capacity(count)));
        let (admin, parent, selector, sink) = (
            self.admin.clone(),
            self.agent.spiffe_id.clone(),
            self.selector.clone(),
            created.clone(),
        );
        let prefix = prefix.to_owned();
        bulk(count, concurrency, Duration::from_secs(600), move |i| {
            let (admin, parent, selector, sink) = (
                admin.clone(),
                parent.clone(),
                selector.clone(),
                sink.clone(),
            );
            let spiffe_id = format!("spiffe://example.org/bench/{prefix}/{i}");
            async move {
                let entry = admin
                    .create_entry(&spiffe_id, &parent, &[selector], None)
                    .await?;
                sink.lock().map_err(|_| anyhow!("poisoned"))?.push(entry);
                Ok(())
            }
        })
        .await?;
        let entries = created.lock().map_err(|_| anyhow!("poisoned"))?.clone();
        Ok(entries)
    }
}

/// A Workload API client on `socket` that accepts large messages.
///
/// Fails when the socket does not accept the connection.
pub(crate) async fn workload_client(socket: &Path) -> Result<SpiffeWorkloadApiClient<Channel>> {
    Ok(SpiffeWorkloadApiClient::new(channel(socket).await?).max_decoding_message_size(MAX_MESSAGE))
}

/// Opens a `FetchX509SVID` stream on a fresh connection.
///
/// Fails when the socket refuses or the agent answers with an error status.
pub(crate) async fn x509_stream(socket: &Path) -> Result<Streaming<X509svidResponse>> {
    let mut client = workload_client(socket).await?;
    Ok(client
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .context("FetchX509SVID")?
        .into_inner())
}

/// Reads `stream` until a message satisfies `done`; returns it with the instant it arrived.
///
/// Fails when the stream ends, errs, or `timeout` passes first.
pub(crate) async fn read_until(
    stream: &mut Streaming<X509svidResponse>,
    timeout: Duration,
    done: impl Fn(&X509svidResponse) -> bool,
) -> Result<(X509svidResponse, Instant)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .map_err(|_| anyhow!("no matching FetchX509SVID message within {timeout:?}"))?
            .context("FetchX509SVID stream failed")?;
        let arrived = Instant::now();
        let Some(message) = message else {
            bail!("FetchX509SVID stream ended")
        };
        if done(&message) {
            return Ok((message, arrived));
        }
    }
}

/// Whether `message` holds an SVID for `spiffe_id`.
pub(crate) fn holds(message: &X509svidResponse, spiffe_id: &str) -> bool {
    message.svids.iter().any(|svid| svid.spiffe_id == spiffe_id)
}

/// Waits until this process holds `count` SVIDs from the agent at `socket`; returns how long
/// that took.
///
/// Fails when it does not happen within `timeout`.
pub(crate) async fn wait_for_svid_count(
    socket: &Path,
    count: usize,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let deadline = start + timeout;
    // The stream refuses until the first identity is in the cache; retry until it opens.
    let mut stream = loop {
        match x509_stream(socket).await {
            Ok(stream) => break stream,
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let left = deadline.saturating_duration_since(Instant::now());
    read_until(&mut stream, left, |m| m.svids.len() >= count).await?;
    Ok(start.elapsed())
}

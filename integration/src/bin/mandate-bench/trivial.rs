//! The limit for `workload-jwt`: the same `SpiffeWorkloadAPI` service answering `FetchJWTSVID`
//! with a constant, served by tonic on a unix socket from a child process of the bench (the
//! hidden `serve-trivial` subcommand), so both sides of the ratio cross a process boundary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use mandate_integration::{Process, wait_for};

use crate::admin::MAX_MESSAGE;
use mandate_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use mandate_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use prost::Message;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Once, Pending, StreamExt, adapters::Chain};
use tonic::{Request, Response, Status};

/// The hidden `serve-trivial <socket> <spiffe-id> <token-file> <x509-file>` subcommand: serves
/// until killed. The x509 file holds an encoded `X509SVIDResponse` sent as the first message
/// of every `FetchX509SVID` stream.
///
/// Fails when the arguments are missing, a file does not read or the socket cannot be bound.
pub(crate) fn child_main(args: &[String]) -> Result<()> {
    let [socket, spiffe_id, token_file, x509_file] = args else {
        anyhow::bail!("serve-trivial needs <socket> <spiffe-id> <token-file> <x509-file>");
    };
    let svid = std::fs::read_to_string(token_file)?;
    let response = JwtsvidResponse {
        svids: vec![Jwtsvid {
            spiffe_id: spiffe_id.clone(),
            svid,
            hint: String::new(),
        }],
    };
    let x509 = X509svidResponse::decode(std::fs::read(x509_file)?.as_slice())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = UnixListener::bind(socket)?;
        tonic::transport::Server::builder()
            .add_service(
                SpiffeWorkloadApiServer::new(Trivial { response, x509 })
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await?;
        Ok(())
    })
}

/// A running `serve-trivial` child; killed on drop.
#[derive(Debug)]
pub(crate) struct TrivialServer {
    /// Its unix socket.
    pub(crate) socket: PathBuf,
    /// The child process, held so that it lives exactly as long as this handle.
    _process: Process,
}

impl TrivialServer {
    /// Starts the child in `dir`, answering `FetchJWTSVID` with `token` for `spiffe_id` and
    /// opening every `FetchX509SVID` stream with `x509`, and waits until its socket accepts
    /// connections.
    ///
    /// Fails when the child does not come up within 10 s.
    pub(crate) fn start(
        dir: &Path,
        spiffe_id: &str,
        token: &str,
        x509: &X509svidResponse,
    ) -> Result<Self> {
        let socket = dir.join("trivial.sock");
        let token_file = dir.join("token.jwt");
        std::fs::write(&token_file, token)?;
        let x509_file = dir.join("x509.pb");
        std::fs::write(&x509_file, x509.encode_to_vec())?;
        let mut command = Command::new(crate::own_executable());
        command
            .arg("serve-trivial")
            .arg(&socket)
            .arg(spiffe_id)
            .arg(&token_file)
            .arg(&x509_file);
        let process =
            Process::spawn(command, &dir.join("trivial.log")).context("starting serve-trivial")?;
        wait_for("serve-trivial socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket).ok()
        })?;
        Ok(Self {
            socket,
            _process: process,
        })
    }
}

#[derive(Debug)]
struct Trivial {
    response: JwtsvidResponse,
    x509: X509svidResponse,
}

type Empty<T> = tokio_stream::Empty<Result<T, Status>>;
/// One message, then open until the client goes, as a real stream stays open.
type OneThenOpen<T> = Chain<Once<Result<T, Status>>, Pending<Result<T, Status>>>;

fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    if request
        .metadata()
        .get(mandate_proto::WORKLOAD_HEADER_KEY)
        .is_none_or(|v| v != "true")
    {
        return Err(Status::invalid_argument("missing security header"));
    }
    Ok(())
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for Trivial {
    type FetchX509SVIDStream = OneThenOpen<X509svidResponse>;
    type FetchX509BundlesStream = Empty<X509BundlesResponse>;
    type FetchJWTBundlesStream = Empty<JwtBundlesResponse>;
    type FetchWITSVIDStream = Empty<WitsvidResponse>;
    type FetchWITBundlesStream = Empty<WitBundlesResponse>;

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        // The same cheap checks any Workload API server makes before answering.
        check_header(&request)?;
        if request.get_ref().audience.is_empty() {
            return Err(Status::invalid_argument("audience must not be empty"));
        }
        Ok(Response::new(self.response.clone()))
    }

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&request)?;
        let first = tokio_stream::once(Ok(self.x509.clone()));
        Ok(Response::new(first.chain(tokio_stream::pending())))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented("trivial server"))
    }

    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented("trivial server"))
    }
}

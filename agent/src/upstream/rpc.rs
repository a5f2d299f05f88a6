//! The signing and minting calls the cache and the Workload API need, over the agent's mTLS
//! client: `SignX509Svids` in batches and `MintJwtSvid`.

use std::sync::Arc;

use mandate_proto::agent::{MintJwtSvidRequest, SignX509SvidRequest, SignX509SvidsRequest};

use super::node::{RPC_TIMEOUT, Upstream};
use crate::cache::signer::{SignFuture, SignReply, SvidSigner};
use crate::workload::jwt_cache::{JwtMinter, MintFuture};

/// Signs and mints through the server.
#[derive(Debug, Clone)]
pub struct ServerRpc(pub Arc<Upstream>);

impl SvidSigner for ServerRpc {
    fn sign(&self, requests: Vec<(String, Vec<u8>)>) -> SignFuture<'_> {
        Box::pin(async move {
            let mut request = tonic::Request::new(SignX509SvidsRequest {
                requests: requests
                    .into_iter()
                    .map(|(entry_id, csr)| SignX509SvidRequest { entry_id, csr })
                    .collect(),
            });
            request.set_timeout(RPC_TIMEOUT);
            let response = self.0.client().sign_x509_svids(request).await?.into_inner();
            Ok(response
                .results
                .into_iter()
                .map(|r| SignReply {
                    entry_id: r.entry_id,
                    chain: r.cert_chain,
                    code: r.code,
                    message: r.message,
                })
                .collect())
        })
    }
}

impl JwtMinter for ServerRpc {
    fn mint(&self, entry_id: String, audience: Vec<String>) -> MintFuture<'_> {
        Box::pin(async move {
            let mut request = tonic::Request::new(MintJwtSvidRequest { entry_id, audience });
            request.set_timeout(RPC_TIMEOUT);
            let response = self.0.client().mint_jwt_svid(request).await?.into_inner();
            Ok((response.token, response.expires_at_unix))
        })
    }
}

//! The auth token: had once from the Auth service with a user name and
//! password ([`authenticate`]), then sent as the `token` header of every
//! request ([`AuthToken`], a tonic interceptor).
//!
//! As clientv3 does, a cluster with auth disabled answers `authenticate`
//! with etcd's "authentication is not enabled"; that is no failure but no
//! token, and requests go out without one. A token expires on the server's
//! terms (simple tokens after `--auth-token-ttl` unused); renewing it is the
//! caller's business (etcdctl runs one command per token).

use api::etcdserverpb::auth_client::AuthClient;
use api::etcdserverpb::AuthenticateRequest;
use api::EtcdError;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;

use crate::Error;

/// The header etcd reads the token from.
pub const TOKEN_HEADER: &str = "token";

/// Adds the auth token, when there is one, to each request.
#[derive(Clone, Default)]
pub struct AuthToken(Option<MetadataValue<Ascii>>);

impl AuthToken {
    /// No token: requests go out as they are.
    pub fn none() -> AuthToken {
        AuthToken(None)
    }

    /// A token as the Auth service gave it.
    pub fn new(token: &str) -> Result<AuthToken, Error> {
        let value = MetadataValue::try_from(token).map_err(Error::Token)?;
        Ok(AuthToken(Some(value)))
    }

    /// Whether requests carry a token.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

/// The token itself is a credential: never printed.
impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.is_set() { "set" } else { "none" };
        f.debug_tuple("AuthToken").field(&shown).finish()
    }
}

impl Interceptor for AuthToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert(TOKEN_HEADER, token.clone());
        }
        Ok(request)
    }
}

/// Asks the Auth service on `channel` for a token for `user`. A cluster with
/// auth disabled gives no token ([`AuthToken::none`]).
pub async fn authenticate(
    channel: Channel,
    user: &str,
    password: &str,
) -> Result<AuthToken, Error> {
    let request = AuthenticateRequest {
        name: user.to_string(),
        password: password.to_string(),
    };
    match AuthClient::new(channel).authenticate(request).await {
        Ok(response) => AuthToken::new(&response.into_inner().token),
        Err(status) if EtcdError::from_status(&status) == Some(EtcdError::AuthNotEnabled) => {
            Ok(AuthToken::none())
        }
        Err(status) => Err(Error::Authenticate(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interceptor_adds_the_token_only_when_there_is_one() {
        let mut token = AuthToken::new("abc.42").expect("token");
        let request = token.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(
            request
                .metadata()
                .get(TOKEN_HEADER)
                .map(|v| v.to_str().ok()),
            Some(Some("abc.42"))
        );
        let request = AuthToken::none()
            .call(tonic::Request::new(()))
            .expect("intercepted");
        assert!(request.metadata().get(TOKEN_HEADER).is_none());
        assert_eq!(format!("{token:?}"), "AuthToken(\"set\")");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        assert!(matches!(
            AuthToken::new("line\nbreak"),
            Err(Error::Token(_))
        ));
    }
}

//! Who may call the webhook: Commerce's request signature and/or a static bearer
//! token configured on the hook.
//!
//! Commerce signs the base64 encoding of the raw body with RSA-SHA256 (PKCS#1 v1.5)
//! and sends the base64 signature in `x-adobe-commerce-webhook-signature`; the public
//! key is the PEM shown in the Commerce Admin.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use secrecy::{ExposeSecret, SecretString};

pub const SIGNATURE_HEADER: &str = "x-adobe-commerce-webhook-signature";

/// Why a call is refused. The text is answered to the caller, so it says what is
/// wrong without revealing anything about the expected values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("not a PEM RSA public key (expected '-----BEGIN PUBLIC KEY-----')")]
    InvalidPublicKey,
    #[error("missing or malformed Authorization bearer token")]
    MissingToken,
    #[error("invalid Authorization bearer token")]
    WrongToken,
    #[error("missing webhook signature header '{SIGNATURE_HEADER}'")]
    MissingSignature,
    #[error("invalid webhook signature")]
    BadSignature,
}

/// Checks calls against what is configured; with nothing configured, every call passes.
#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 of the expected token: comparing digests in constant time hides both
    /// the token's content and its length.
    token_digest: Option<[u8; 32]>,
    signature_key: Option<VerifyingKey<Sha256>>,
}

impl Authenticator {
    pub fn new(
        token: Option<SecretString>,
        public_key_pem: Option<&SecretString>,
    ) -> Result<Self, AuthError> {
        let signature_key = public_key_pem
            .map(|pem| parse_public_key(pem.expose_secret()))
            .transpose()?
            .map(VerifyingKey::<Sha256>::new);
        Ok(Authenticator {
            // Trimmed like the presented token: a token read from a Secret file
            // usually ends in a newline, which no header can carry.
            token_digest: token.map(|t| Sha256::digest(t.expose_secret().trim().as_bytes()).into()),
            signature_key,
        })
    }

    pub fn requires_signature(&self) -> bool {
        self.signature_key.is_some()
    }

    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }

    /// Checks the bearer token, which needs only the headers: done before the body
    /// is read. The scheme is case-insensitive (RFC 9110), the token trimmed.
    pub fn verify_token(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(expected) = &self.token_digest else {
            return Ok(());
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(AuthError::MissingToken)?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if !bool::from(presented.ct_eq(expected)) {
            return Err(AuthError::WrongToken);
        }
        Ok(())
    }

    /// Checks Commerce's signature of the raw body, when one is required.
    pub fn verify_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
        if let Some(key) = &self.signature_key {
            let header = headers
                .get(SIGNATURE_HEADER)
                .ok_or(AuthError::MissingSignature)?;
            let signature = BASE64
                .decode(header.as_bytes())
                .ok()
                .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
                .ok_or(AuthError::BadSignature)?;
            let signed = BASE64.encode(body);
            key.verify(signed.as_bytes(), &signature)
                .map_err(|_| AuthError::BadSignature)?;
        }
        Ok(())
    }
}

/// Accepts SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`, what Commerce shows) and PKCS#1
/// (`BEGIN RSA PUBLIC KEY`). Pasted keys often have `\n` escaped or CRLF line ends.
fn parse_public_key(pem: &str) -> Result<RsaPublicKey, AuthError> {
    let pem = pem.trim().replace("\\n", "\n").replace("\r\n", "\n");
    RsaPublicKey::from_public_key_pem(&pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem))
        .map_err(|_| AuthError::InvalidPublicKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_token(configured: &str, header: &str) -> Result<(), AuthError> {
        let auth = Authenticator::new(Some(SecretString::from(configured)), None).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(header).unwrap());
        auth.verify_token(&headers)
    }

    #[test]
    fn token_must_match_exactly() {
        assert_eq!(with_token("t0ken", "Bearer t0ken"), Ok(()));
        assert_eq!(
            with_token("t0ken", "Bearer t0ke"),
            Err(AuthError::WrongToken)
        );
        assert_eq!(
            with_token("t0ken", "Basic t0ken"),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            with_token("t0ken", "Bearert0ken"),
            Err(AuthError::MissingToken)
        );
        let auth = Authenticator::new(Some(SecretString::from("t0ken")), None).unwrap();
        assert_eq!(
            auth.verify_token(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        );
    }

    #[test]
    fn a_token_read_from_a_file_ending_in_a_newline_matches() {
        assert_eq!(with_token("t0ken\n", "Bearer t0ken"), Ok(()));
        assert_eq!(with_token("t0ken\r\n", "Bearer t0ken"), Ok(()));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["bearer t0ken", "BEARER t0ken", "BeArEr t0ken"] {
            assert_eq!(with_token("t0ken", header), Ok(()), "{header}");
        }
    }

    #[test]
    fn garbage_public_key_is_rejected() {
        let error = Authenticator::new(
            None,
            Some(&SecretString::from(
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
            )),
        );
        assert_eq!(error.err(), Some(AuthError::InvalidPublicKey));
    }

    #[test]
    fn nothing_configured_lets_everything_through() {
        let auth = Authenticator::new(None, None).unwrap();
        assert!(!auth.requires_signature() && !auth.requires_token());
        assert_eq!(auth.verify_token(&HeaderMap::new()), Ok(()));
        assert_eq!(
            auth.verify_signature(&HeaderMap::new(), b"anything"),
            Ok(())
        );
    }
}

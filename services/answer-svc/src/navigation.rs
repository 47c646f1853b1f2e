//! `NavigationService`: definitions, references, outlines, indexed file text and the repo list,
//! answered by hydrate-svc (Flight actions of the same messages) with the caller's token
//! enforced here: a request names only repos the token may read (PERMISSION_DENIED otherwise),
//! one that names none is narrowed to them, and the repo list shows only them.

use std::sync::Arc;
use std::time::Duration;

use codeintel_core::proto::v1::navigation_service_server::NavigationService;
use codeintel_core::proto::v1::{
    CallersResponse, DefinitionsResponse, FileRequest, FileResponse, ListReposRequest, ListReposResponse,
    ReferencesResponse, Scope, SymbolRequest,
};
use codeintel_server::admission::Principal;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::AnswerError;
use crate::pipeline::{restrict, Engine};
use crate::retrievers::CallError;

/// How long a navigation call may take when the client sets no deadline.
pub const NAV_DEADLINE: Duration = Duration::from_secs(10);

pub struct NavigationGrpc(pub Arc<Engine>);

/// A hydrate-svc failure as the request's error: its own refusals keep their code and words.
fn nav_error(action: &str, e: CallError) -> AnswerError {
    match e {
        CallError::Timeout(_) => AnswerError::DeadlineExceeded(format!("{action}: hydrate-svc: {e}")),
        CallError::Status(s) => match s.code() {
            tonic::Code::InvalidArgument => AnswerError::InvalidArgument(s.message().into()),
            tonic::Code::NotFound => AnswerError::NotFound(s.message().into()),
            tonic::Code::ResourceExhausted => AnswerError::Overloaded(s.message().into()),
            _ => AnswerError::Unavailable(format!(
                "hydrate-svc, which answers {action}, did not: {}",
                CallError::Status(s)
            )),
        },
    }
}

/// The repos a request may cover: those it names, checked against the token, or the token's.
pub fn allowed_repos(who: Option<&Principal>, repos: Vec<String>) -> Result<Vec<String>, AnswerError> {
    Ok(restrict(who, Scope { repos, ..Default::default() })?.repos)
}

impl NavigationGrpc {
    async fn call<Req: Message, Resp: Message + Default>(
        &self,
        action: &str,
        req: &Req,
        deadline: Option<Duration>,
    ) -> Result<Resp, AnswerError> {
        let d = deadline.map_or(NAV_DEADLINE, |d| d.min(NAV_DEADLINE));
        let body = self.0.navigate(action, req.encode_to_vec(), d).await.map_err(|e| nav_error(action, e))?;
        Resp::decode(body.as_slice())
            .map_err(|e| AnswerError::Internal(format!("hydrate-svc's answer to {action} does not decode: {e}")))
    }
}

fn caller<T>(r: &Request<T>) -> Option<Principal> {
    r.extensions().get::<Principal>().cloned()
}

fn deadline<T>(r: &Request<T>) -> Option<Duration> {
    let v = r.metadata().get("grpc-timeout")?.to_str().ok()?;
    codeintel_server::rpc::parse_grpc_timeout(v)
}

#[tonic::async_trait]
impl NavigationService for NavigationGrpc {
    async fn find_definitions(&self, r: Request<SymbolRequest>) -> Result<Response<DefinitionsResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let mut req = r.into_inner();
        req.repos = allowed_repos(who.as_ref(), req.repos)?;
        Ok(Response::new(self.call("FindDefinitions", &req, d).await?))
    }

    async fn find_references(&self, r: Request<SymbolRequest>) -> Result<Response<ReferencesResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let mut req = r.into_inner();
        req.repos = allowed_repos(who.as_ref(), req.repos)?;
        Ok(Response::new(self.call("FindReferences", &req, d).await?))
    }

    async fn find_callers(&self, r: Request<SymbolRequest>) -> Result<Response<CallersResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let mut req = r.into_inner();
        req.repos = allowed_repos(who.as_ref(), req.repos)?;
        Ok(Response::new(self.call("FindCallers", &req, d).await?))
    }

    async fn outline(&self, r: Request<FileRequest>) -> Result<Response<DefinitionsResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let req = r.into_inner();
        allowed_repos(who.as_ref(), vec![req.repo.clone()])?;
        Ok(Response::new(self.call("Outline", &req, d).await?))
    }

    async fn read_file(&self, r: Request<FileRequest>) -> Result<Response<FileResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let req = r.into_inner();
        allowed_repos(who.as_ref(), vec![req.repo.clone()])?;
        Ok(Response::new(self.call("ReadFile", &req, d).await?))
    }

    async fn list_repos(&self, r: Request<ListReposRequest>) -> Result<Response<ListReposResponse>, Status> {
        let (who, d) = (caller(&r), deadline(&r));
        let mut resp: ListReposResponse = self.call("ListRepos", &r.into_inner(), d).await?;
        resp.repos.retain(|repo| who.as_ref().is_none_or(|p| p.may_read(&repo.repo)));
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_narrows_unnamed_repos_and_refuses_others() {
        let p = Principal { name: "ci".into(), repos: Some(Arc::new(vec!["shop".into()])) };
        assert_eq!(allowed_repos(Some(&p), vec![]).unwrap(), vec!["shop".to_string()]);
        assert_eq!(allowed_repos(Some(&p), vec!["shop".into()]).unwrap(), vec!["shop".to_string()]);
        let e = allowed_repos(Some(&p), vec!["bank".into()]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.to_string().contains("may not read repo \"bank\""), "{e}");
        assert!(allowed_repos(None, vec![]).unwrap().is_empty(), "no token: every repo");
    }

    #[test]
    fn hydrate_refusals_keep_their_code_and_outages_say_who() {
        let e = nav_error("ReadFile", CallError::Status(Status::not_found("repo shop has no indexed file x")));
        assert_eq!((e.code(), e.to_string()), (tonic::Code::NotFound, "repo shop has no indexed file x".to_string()));
        let e = nav_error("ReadFile", CallError::Status(Status::unavailable("connection refused")));
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert!(e.to_string().starts_with("hydrate-svc, which answers ReadFile, did not"), "{e}");
        assert_eq!(nav_error("Outline", CallError::Timeout(NAV_DEADLINE)).code(), tonic::Code::DeadlineExceeded);
    }
}

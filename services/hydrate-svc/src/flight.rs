//! Arrow Flight adapter: `DoGet` streams the record batches a ticket names; `GetFlightInfo`
//! and `GetSchema` describe them; `ListFlights` lists the repos; `DoAction` answers navigation
//! requests ([`crate::nav`]). The service is read-only.

use std::sync::Arc;
use std::time::Instant;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use codeintel_core::ticket::HydrateTicket;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::HydrateError;
use crate::store::ChunkStore;
use codeintel_core::wire::served_schema as schema;

pub struct HydrateFlight(pub Arc<ChunkStore>);

fn read_only(what: &str) -> Status {
    HydrateError::Unsupported(format!("hydrate-svc is read-only and does not support {what}; use DoGet")).into()
}

impl HydrateFlight {
    async fn fetch(&self, ticket: &[u8]) -> Result<Vec<arrow::record_batch::RecordBatch>, HydrateError> {
        let t = HydrateTicket::decode(ticket).map_err(HydrateError::InvalidArgument)?;
        let store = self.0.clone();
        let started = Instant::now();
        let res = tokio::task::spawn_blocking(move || store.fetch(&t))
            .await
            .map_err(|e| HydrateError::Internal(format!("lookup task failed: {e}")))?;
        self.0.metrics.stage("duckdb_fetch", started.elapsed().as_secs_f64());
        res
    }
}

#[tonic::async_trait]
impl FlightService for HydrateFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let batches = self.fetch(&request.get_ref().ticket).await?;
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema())
            .build(stream::iter(batches.into_iter().map(Ok)))
            .map_err(|e| Status::from(HydrateError::Internal(format!("encoding batches: {e}"))));
        Ok(Response::new(stream.boxed()))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let cmd = request.into_inner().cmd;
        let batches = self.fetch(&cmd).await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let info = FlightInfo::new()
            .try_with_schema(&schema())
            .map_err(HydrateError::from)?
            .with_descriptor(FlightDescriptor::new_cmd(cmd.clone()))
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(cmd)))
            .with_total_records(rows as i64);
        Ok(Response::new(info))
    }

    async fn get_schema(&self, _request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let r: SchemaResult =
            SchemaAsIpc::new(&schema(), &IpcWriteOptions::default()).try_into().map_err(HydrateError::from)?;
        Ok(Response::new(r))
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let mut infos = Vec::new();
        for (repo, chunks) in self.0.repos() {
            let info = FlightInfo::new()
                .try_with_schema(&schema())
                .map_err(HydrateError::from)?
                .with_descriptor(FlightDescriptor::new_path(vec![repo]))
                .with_total_records(chunks as i64);
            infos.push(Ok(info));
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn handshake(
        &self,
        _r: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(read_only("Handshake (no authentication is configured)"))
    }

    async fn poll_flight_info(&self, _r: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(read_only("PollFlightInfo"))
    }

    async fn do_put(&self, _r: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        Err(read_only("DoPut"))
    }

    async fn do_exchange(
        &self,
        _r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(read_only("DoExchange"))
    }

    /// Navigation (`crate::nav::ACTIONS`): a protobuf request in, one result holding the
    /// protobuf answer out.
    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let store = self.0.clone();
        let started = Instant::now();
        let body = tokio::task::spawn_blocking(move || crate::nav::run_action(&store, &action.r#type, &action.body))
            .await
            .map_err(|e| HydrateError::Internal(format!("navigation task failed: {e}")))??;
        self.0.metrics.stage("navigation", started.elapsed().as_secs_f64());
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(&self, _r: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = crate::nav::ACTIONS
            .iter()
            .map(|(kind, what)| Ok(ActionType { r#type: kind.to_string(), description: what.to_string() }));
        Ok(Response::new(stream::iter(actions).boxed()))
    }
}

//! Per-tenant service level objectives: what a tier promises ([`Slo`], [`Objective`],
//! [`LatencyObjective`]), and which of them a status or an alert is about ([`Sli`]).
//!
//! Objectives are given per tier to [`TenantRegistryBuilder::slo`](crate::TenantRegistryBuilder::slo)
//! (or [`TelemetryBuilder`](crate::TelemetryBuilder)); the registry keeps each tenant's SLA
//! windows, the view reports them, and the [alert engine](crate::alert) judges their burn rates.

pub use crate::stats::{
    InvalidObjective, LatencyObjective, Objective, Sli, Slo, MAX_COMPLIANCE_DAYS,
};

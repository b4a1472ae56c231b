//! Stateful operators. Filters are fused into emitters (see
//! `runtime::route`); windows run as partitioned tasks.

pub mod window;

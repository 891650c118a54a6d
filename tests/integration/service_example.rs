//! The service example, built: driven through an outage and a SIGTERM (to be written).

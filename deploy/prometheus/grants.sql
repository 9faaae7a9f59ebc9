-- deploy/prometheus/grants.sql - a login for postgres_exporter (run as a
-- superuser in the node database; psql -v password=... sets its password):
-- pg_monitor for postgres_exporter's own metrics, and what queries.yaml reads.
\set ON_ERROR_STOP 1
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ebpf_capture_exporter') AS create_role \gset
\if :create_role
CREATE ROLE ebpf_capture_exporter LOGIN;
\endif
\if :{?password}
ALTER ROLE ebpf_capture_exporter PASSWORD :'password';
\endif
GRANT pg_monitor TO ebpf_capture_exporter;
GRANT SELECT ON service_map_minutes, captures TO ebpf_capture_exporter;
GRANT EXECUTE ON FUNCTION capture_status(), _capture_slots(), _otlp_slots()
TO ebpf_capture_exporter;

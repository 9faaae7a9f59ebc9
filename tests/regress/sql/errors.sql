--
-- errors: what capture_start and capture_stop refuse. The server runs in the
-- node network namespace, where cni0 exists; ebpf_capture.database = postgres.
--
\set VERBOSITY terse
-- the regression database is not ebpf_capture.database
CREATE EXTENSION ebpf_capture;
SELECT capture_start('cni0');
DROP EXTENSION ebpf_capture;
\c postgres
\set VERBOSITY terse
CREATE EXTENSION ebpf_capture;
-- interface names
SELECT capture_start('nosuch0');
SELECT capture_start('aaaaaaaaaaaaaaaa');
SELECT capture_start('eth0; rm');
SELECT capture_start('../x');
SELECT capture_start('');
-- patterns of routed pod interfaces (docs/cni.md)
SELECT capture_start('cali[0-9');
SELECT capture_start('cali[]*');
SELECT capture_start('cali]*');
SELECT capture_start('cali*xxxxxxxxxxx');
SELECT capture_start('ca li*');
-- nothing was started by any of that
SELECT count(*) AS captures FROM capture_status();
-- not for ordinary users
CREATE ROLE regress_ebpfc_user;
SET ROLE regress_ebpfc_user;
SELECT capture_start('cni0');
SELECT capture_stop('cni0');
RESET ROLE;
DROP ROLE regress_ebpfc_user;
-- one capture per interface
SELECT capture_start('cni0');
SELECT capture_start('cni0');
SELECT capture_stop('cni0');
-- a pattern nothing matches yet is taken (pods may come later), with a notice
SELECT capture_start('nomatch*');
SELECT capture_start('nomatch*');
SELECT capture_stop('nomatch*');
-- wait (at most 30 s) until they have stopped
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM capture_status() WHERE state <> 'stopped');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT interface, state, mode, pattern, attached FROM capture_status();
-- stopping what is not running
SELECT capture_stop('cni0');
SELECT capture_stop('lo');
DROP EXTENSION ebpf_capture;
-- a database that is not UTF-8 cannot hold captures
CREATE DATABASE regress_ebpfc_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'
    TEMPLATE template0;
\c regress_ebpfc_latin1
\set VERBOSITY terse
CREATE EXTENSION ebpf_capture;
SELECT capture_start('cni0');
\c postgres
DROP DATABASE regress_ebpfc_latin1;
-- the Kubernetes settings (the API's URL, the token's file) are shown to
-- superusers only
CREATE ROLE regress_ebpfc_reader;
SET ROLE regress_ebpfc_reader;
SHOW ebpf_capture.kube_api_url;
SHOW ebpf_capture.kube_token_file;
SELECT count(*) FROM pg_settings WHERE name LIKE 'ebpf_capture.kube%';
RESET ROLE;
DROP ROLE regress_ebpfc_reader;

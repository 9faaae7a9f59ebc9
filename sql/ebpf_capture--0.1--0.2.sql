-- ebpf_capture 0.1 -> 0.2
--
-- A new database gets 0.2 through this script too: CREATE EXTENSION runs
-- ebpf_capture--0.1.sql, then this. A fresh install and an upgraded one
-- therefore have the same objects, built by the same statements.
\echo Use "ALTER EXTENSION ebpf_capture UPDATE" to load this file. \quit

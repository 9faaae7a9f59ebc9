// hub.h - the hub (docs/hub.md): a database that reads every node's.
//
// The launcher starts the hub worker (hub_worker.cpp) while the hub table
// says so, restarts it with back-off, and lets it clean up after
// hub_stop(). On a node, it keeps the hub's role (hub_access.cpp).
#pragma once

namespace ebpfc::pg {

// Called by the launcher on every pass of its loop (about once a second).
void hub_launcher_tick();
void hub_access_tick();

// The settings may have changed (SIGHUP in the launcher).
void hub_settings_changed();

}  // namespace ebpfc::pg

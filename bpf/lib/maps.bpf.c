// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* The one definition of the sensor's maps and configuration (see lib/maps.h). */
#define RF_DEFINE_MAPS
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Unused instances that keep every record type in the object's BTF, so
 * that the layout test can read their offsets from the object itself.
 */
struct rf_exec_event rf_btf_exec_event __attribute__((unused));
struct rf_fork_event rf_btf_fork_event __attribute__((unused));
struct rf_exit_event rf_btf_exit_event __attribute__((unused));
struct rf_connect_event rf_btf_connect_event __attribute__((unused));
struct rf_ptrace_event rf_btf_ptrace_event __attribute__((unused));
struct rf_vm_access_event rf_btf_vm_access_event __attribute__((unused));
struct rf_proc_mem_event rf_btf_proc_mem_event __attribute__((unused));
struct rf_stdio_dup_event rf_btf_stdio_dup_event __attribute__((unused));
struct rf_counter rf_btf_counter __attribute__((unused));
struct rf_egress_event rf_btf_egress_event __attribute__((unused));
struct rf_detection_event rf_btf_detection_event __attribute__((unused));
struct rf_job_lockdown rf_btf_job_lockdown __attribute__((unused));
struct rf_flow_key rf_btf_flow_key __attribute__((unused));
struct rf_flow_state rf_btf_flow_state __attribute__((unused));
/* ... and every enum, so that the TypeScript constants are checked against them too. */
enum rf_event_type rf_btf_event_type __attribute__((unused));
enum rf_probe rf_btf_probe __attribute__((unused));
enum rf_fd_kind rf_btf_fd_kind __attribute__((unused));
enum rf_egress_hook rf_btf_egress_hook __attribute__((unused));
enum rf_verdict rf_btf_verdict __attribute__((unused));
enum rf_allow_source rf_btf_allow_source __attribute__((unused));
enum rf_detection rf_btf_detection __attribute__((unused));
enum rf_detection_action rf_btf_detection_action __attribute__((unused));
enum rf_stdio_ipc rf_btf_stdio_ipc __attribute__((unused));
enum rf_detection_hook rf_btf_detection_hook __attribute__((unused));
enum rf_agent_gone rf_btf_agent_gone __attribute__((unused));
enum rf_detection_flags rf_btf_detection_flags __attribute__((unused));

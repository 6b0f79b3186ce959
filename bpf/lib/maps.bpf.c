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

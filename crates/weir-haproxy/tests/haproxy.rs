//! The client and the actuator against a real HAProxy (Debian package `haproxy`).
//! Each test starts its own HAProxy on free local ports, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{BACKEND, Haproxy};
use weir_core::{Decision, Proposal, Weights};
use weir_edge::{Actuator, ActuatorError};
use weir_haproxy::{HaproxyActuator, HaproxyError, OpState, RuntimeApi, ServerWeight};

fn decision(primary: u32, replicas: &[u32]) -> Decision {
    let weights = Weights {
        primary,
        replicas: replicas.to_vec(),
    };
    Decision {
        at_s: 0.0,
        weights: weights.clone(),
        proposal: Proposal::new(weights, "test"),
        interventions: Vec::new(),
    }
}

#[tokio::test]
async fn set_weight_then_get_weight_reads_it_back() {
    let h = Haproxy::start();
    let api = RuntimeApi::new(h.tcp.clone(), 2.0).unwrap();

    assert_eq!(
        api.get_weight(BACKEND, "primary").await.unwrap(),
        ServerWeight {
            current: 1,
            initial: 1
        }
    );
    api.set_weight(BACKEND, "primary", 20).await.unwrap();
    api.set_weight(BACKEND, "replica-2", 256).await.unwrap();
    assert_eq!(
        api.get_weight(BACKEND, "primary").await.unwrap(),
        ServerWeight {
            current: 20,
            initial: 1
        }
    );
    assert_eq!(
        api.get_weight(BACKEND, "replica-2").await.unwrap().current,
        256
    );

    let rows = api.show_servers_state(BACKEND).await.unwrap();
    let summary: Vec<(&str, u32, u32)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.weight, r.initial_weight))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("primary", 20, 1),
            ("replica-1", 1, 1),
            ("replica-2", 256, 1)
        ]
    );
    assert!(rows.iter().all(|r| r.backend == BACKEND));
    assert!(rows.iter().all(|r| r.op_state == OpState::Running));
    assert!(rows.iter().all(|r| !r.admin_state.in_maintenance()));
}

#[tokio::test]
async fn the_unix_socket_works_too() {
    let h = Haproxy::start();
    let api = RuntimeApi::new(h.unix.clone(), 2.0).unwrap();
    api.set_weight(BACKEND, "replica-1", 7).await.unwrap();
    assert_eq!(
        api.get_weight(BACKEND, "replica-1").await.unwrap().current,
        7
    );
    let reply = api.command("show servers state").await.unwrap();
    assert!(reply.contains("replica-1"), "{reply}");
}

#[tokio::test]
async fn haproxy_error_replies_are_rejections_carrying_the_reply() {
    let h = Haproxy::start();
    let api = RuntimeApi::new(h.tcp.clone(), 2.0).unwrap();

    let e = api.set_weight(BACKEND, "replica-9", 5).await.unwrap_err();
    match &e {
        HaproxyError::Rejected { command, reply } => {
            assert_eq!(command, "set weight reads/replica-9 5");
            assert_eq!(reply, "No such server.");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let e = api.get_weight("writes", "primary").await.unwrap_err();
    assert!(e.to_string().contains("No such backend."), "{e}");
    let e = api.show_servers_state("writes").await.unwrap_err();
    assert!(matches!(e, HaproxyError::Rejected { .. }), "{e:?}");
}

#[tokio::test]
async fn the_actuator_applies_a_decision_and_reads_it_back() {
    let h = Haproxy::start();
    let mut actuator =
        HaproxyActuator::new(h.actuator_config(&["replica-1", "replica-2"])).unwrap();
    assert_eq!(actuator.name(), "haproxy");

    // Start-up: the config's 1/1/1 reads back as an even split.
    let start = actuator.read_current().await.unwrap();
    assert_eq!(start.total(), Weights::TOTAL);
    assert!(start.iter().all(|x| x == 33 || x == 34), "{start}");

    let d = decision(20, &[0, 80]);
    assert_eq!(
        actuator.plan(&d).unwrap(),
        vec![
            "set weight reads/primary 20",
            "set weight reads/replica-2 80",
            "set weight reads/replica-1 0",
        ]
    );
    actuator.apply(&d).await.unwrap();
    assert_eq!(actuator.read_current().await.unwrap(), d.weights);

    let api = actuator.api();
    assert_eq!(
        api.get_weight(BACKEND, "replica-1").await.unwrap().current,
        0
    );
    let states = actuator.servers_state().await.unwrap();
    let weights: Vec<u32> = states.iter().map(|s| s.weight).collect();
    assert_eq!(weights, vec![20, 0, 80]);

    // Idempotent: the loop re-applies every interval.
    actuator.apply(&d).await.unwrap();
    let everything_to_primary = decision(100, &[0, 0]);
    actuator.apply(&everything_to_primary).await.unwrap();
    assert_eq!(
        actuator.read_current().await.unwrap(),
        Weights::all_primary(2)
    );
}

#[tokio::test]
async fn an_unknown_server_is_rejected_with_haproxys_reply() {
    let h = Haproxy::start();
    let mut actuator =
        HaproxyActuator::new(h.actuator_config(&["replica-1", "replica-9"])).unwrap();
    let e = actuator.apply(&decision(20, &[40, 40])).await.unwrap_err();
    match &e {
        ActuatorError::Rejected(msg) => {
            assert!(msg.contains("No such server."), "{msg}");
            assert!(msg.contains("reads/replica-9"), "{msg}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(e.kind(), "rejected");

    let e = actuator.servers_state().await.unwrap_err().to_string();
    assert!(e.contains("no server `replica-9`"), "{e}");
    assert!(e.contains("primary, replica-1, replica-2"), "{e}");
}

#[tokio::test]
async fn a_gone_socket_is_unreachable_and_says_where() {
    let mut h = Haproxy::start();
    let mut actuator =
        HaproxyActuator::new(h.actuator_config(&["replica-1", "replica-2"])).unwrap();
    actuator.apply(&decision(0, &[50, 50])).await.unwrap();

    h.kill();

    let e = actuator.apply(&decision(0, &[50, 50])).await.unwrap_err();
    match &e {
        ActuatorError::Unreachable(msg) => {
            assert!(msg.contains(&h.tcp.to_string()), "{msg}");
            assert!(msg.contains("is unreachable"), "{msg}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(e.kind(), "unreachable");

    let unix = RuntimeApi::new(h.unix.clone(), 2.0).unwrap();
    let e = unix.get_weight(BACKEND, "primary").await.unwrap_err();
    assert!(matches!(e, HaproxyError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("admin.sock"), "{e}");
}

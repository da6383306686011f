use super::*;

#[test]
fn refused_logins_and_privileges_are_permanent_and_outages_transient() {
    for permanent in [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::INSUFFICIENT_PRIVILEGE,
    ] {
        assert_eq!(
            retry_of_code(Some(&permanent)),
            Retry::Permanent,
            "{}",
            permanent.code()
        );
    }
    for transient in [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::CONNECTION_FAILURE,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::UNIQUE_VIOLATION,
    ] {
        assert_eq!(
            retry_of_code(Some(&transient)),
            Retry::Transient,
            "{}",
            transient.code()
        );
    }
    assert_eq!(
        retry_of_code(None),
        Retry::Transient,
        "no SQLSTATE: the connection failed"
    );
}

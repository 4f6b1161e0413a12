//! Administrator operations as JSON (`portvakt-wire`, feature `json`), as the HTTP API's
//! `/v1/admin/<operation>` reads them: the input's first line names the operation, the
//! rest is the body. Whatever arrives, reading it answers an operation or a message,
//! never a panic; an operation read encodes to a frame or is refused by the frame's own
//! limits; and its JSON form reads back to the same operation.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portvakt_wire::{Admin, Frame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, body) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    let Ok(owned) = Admin::json_owned(name, &value) else {
        return;
    };
    let Ok(admin) = Admin::from_json(name, &value, &owned) else {
        return;
    };
    let mut frame = BytesMut::new();
    if Frame::Admin(1, admin.clone()).encode(&mut frame).is_ok() {
        assert_eq!(Frame::decode(&frame), Ok(Frame::Admin(1, admin.clone())));
    }
    let (again_name, fields) = admin.to_json();
    let again = serde_json::Value::Object(fields);
    let owned = Admin::json_owned(&again_name, &again).expect("its own JSON");
    assert_eq!(
        Admin::from_json(&again_name, &again, &owned).expect("its own JSON"),
        admin
    );
});

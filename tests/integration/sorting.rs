//! sortBy / sortOrder: server-side sorting where slapd can (sssvlv, attributes with an ordering
//! rule), sorting in the gateway up to a limit where it cannot, and stable pages either way.

use crate::gateway::TestGateway;
use serde_json::json;

async fn walk(gw: &TestGateway, query: &str, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let r = gw
            .get(&format!("/Users?{query}&startIndex={start}&count={page}"))
            .await
            .expect(200);
        let items = r.body["Resources"].as_array().unwrap().clone();
        if items.is_empty() {
            return out;
        }
        out.extend(
            items
                .iter()
                .map(|u| u["userName"].as_str().unwrap().to_string()),
        );
        start += page;
    }
}

#[tokio::test]
async fn sorted_lists_are_ordered_and_stable_across_pages() {
    let gw = TestGateway::start_with(|t| {
        t.replace(
            "retry_after_secs = 5",
            "retry_after_secs = 5\nmax_sort_entries = 12",
        )
    })
    .await;
    for name in ["mike", "Zed", "anna", "Bert", "carl", "dora", "eve"] {
        gw.create_user(name).await;
    }
    // userName (uid) has no ordering rule: the gateway sorts, case-insensitively.
    let mut expected: Vec<String> = [
        "alice", "bob", "carol", "mike", "Zed", "anna", "Bert", "carl", "dora", "eve",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort_by_key(|s| s.to_lowercase());
    assert_eq!(walk(&gw, "sortBy=userName", 3).await, expected);
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(
        walk(&gw, "sortBy=userName&sortOrder=descending", 4).await,
        reversed
    );

    // meta.created has an ordering rule: slapd's sssvlv sorts, beyond any gateway limit.
    // Timestamps have one-second resolution, so check order and page stability, not names.
    for (order, query) in [
        (1, "sortBy=meta.created"),
        (-1, "sortBy=meta.created&sortOrder=descending"),
    ] {
        let r = gw
            .get(&format!("/Users?{query}&count=50"))
            .await
            .expect(200);
        let stamps: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["meta"]["created"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(stamps.len(), 10);
        assert!(
            stamps
                .windows(2)
                .all(|w| (w[0].cmp(&w[1]) as i32) * order <= 0),
            "{stamps:?}"
        );
        let one_page: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            walk(&gw, query, 3).await,
            one_page,
            "pages of a sorted list are stable"
        );
    }

    // Filter + sort + POST /.search agree.
    let r = gw
        .post(
            "/Users/.search",
            &json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "userName sw \"c\"", "sortBy": "userName", "sortOrder": "descending"}),
        )
        .await
        .expect(200);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["carol", "carl"]);

    // Bad sorts are clear 400s.
    gw.get("/Users?sortBy=nickName")
        .await
        .expect_error(400, Some("invalidValue"));
    gw.get("/Users?sortBy=userName&sortOrder=sideways")
        .await
        .expect_error(400, Some("invalidValue"));

    // Past the gateway's sort limit: tooMany, unless the directory sorts.
    for name in ["f1", "f2", "f3"] {
        gw.create_user(name).await;
    }
    let r = gw
        .get("/Users?sortBy=userName")
        .await
        .expect_error(400, Some("tooMany"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("12"),
        "{}",
        r.body
    );
    assert_eq!(
        walk(&gw, "sortBy=meta.created&sortOrder=descending", 5)
            .await
            .len(),
        13
    );

    // Groups sort by displayName.
    let r = gw
        .get("/Groups?sortBy=displayName&excludedAttributes=members")
        .await
        .expect(200);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["all-hands", "engineering", "sales"]);
}

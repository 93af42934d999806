def test_create_and_list(alice):
    folder = alice.create("folder", "Project A")
    wf = alice.create("workflow", "SPA 1", folder["id"], workflow_type="spa")
    steps = alice.children(wf["id"])
    assert [s["name"] for s in steps] == ["Screening", "Imaging", "Processing"]
    assert folder["access"] == "owner"

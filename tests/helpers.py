"""Assertions shared by the API and page tests."""


def assert_error(response, status: int, *words: str, case: object = None) -> str:
    """The response is `status` with a body of exactly {"detail": "<non-empty string>"}, and the
    detail mentions each of `words` (case-insensitive). `case` names the input in failures."""
    assert response.status_code == status, (case, response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"detail"}, (case, body)
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip(), (case, body)
    for word in words:
        assert word.lower() in detail.lower(), (case, word, detail)
    return detail

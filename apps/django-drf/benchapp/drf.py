"""REST framework hooks named in settings.REST_FRAMEWORK (kept apart from views.py, which
rest_framework.views would otherwise import while it is itself being imported)."""

from rest_framework.negotiation import DefaultContentNegotiation


class IgnoreClientContentNegotiation(DefaultContentNegotiation):
    """Parsers as usual; always render with the first renderer (JSON), whatever the client's
    Accept header, instead of answering 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _message(data):
    if isinstance(data, dict):
        if set(data) == {"detail"}:
            return str(data["detail"])
        return "; ".join(f"{key}: {_message(value)}" for key, value in data.items())
    if isinstance(data, list):
        return " ".join(_message(value) for value in data)
    return str(data)


def exception_handler(exc, context):
    """REST framework's handler, with the body as {"error": "..."}."""
    from rest_framework.views import exception_handler as default_handler

    response = default_handler(exc, context)
    if response is not None:
        response.data = {"error": _message(response.data)}
    return response

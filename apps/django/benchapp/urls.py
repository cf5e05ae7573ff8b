from django.urls import path

from benchapp import views

urlpatterns = [
    path("", views.health),
    path("ping", views.ping),
    path("json", views.json_view),
    path("db-read", views.db_read),
    path("db-write", views.db_write),
    path("upload", views.upload),
    path("stream", views.stream),
    path("cpu", views.cpu),
    path("sleep/<str:mode>", views.sleep),
    path("sqlite/<str:mode>/read/<str:item_id>", views.sqlite_read),
    path("sqlite/<str:mode>/write/<str:item_id>", views.sqlite_write),
    path("items", views.items),
    path("items/<str:item_id>", views.item),
    path("upsert", views.upsert),
    path("io-intensive", views.io_intensive),
]

handler404 = "benchapp.views.not_found"
handler500 = "benchapp.views.server_error"

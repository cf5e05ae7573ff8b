from django.urls import path

from benchapp import views

urlpatterns = [
    path("", views.Health.as_view()),
    path("ping", views.Ping.as_view()),
    path("json", views.Json.as_view()),
    path("db-read", views.DbRead.as_view()),
    path("db-write", views.DbWrite.as_view()),
    path("upload", views.Upload.as_view()),
    path("stream", views.Stream.as_view()),
    path("cpu", views.Cpu.as_view()),
    path("sleep/<str:mode>", views.Sleep.as_view()),
    path("sqlite/<str:mode>/read/<str:item_id>", views.SqliteRead.as_view()),
    path("sqlite/<str:mode>/write/<str:item_id>", views.SqliteWrite.as_view()),
    path("items", views.ItemList.as_view()),
    path("items/<str:item_id>", views.ItemDetail.as_view()),
    path("upsert", views.Upsert.as_view()),
    path("io-intensive", views.IoIntensive.as_view()),
]

handler404 = "benchapp.views.not_found"
handler500 = "benchapp.views.server_error"

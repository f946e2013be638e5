@echo off
rem A stand-in for docker.exe in tests/test_scripts.py (run under Wine's cmd): records every call in
rem FAKE_LOG and answers like an engine running the test stack.
rem   FAKE_DOCKER_MODE     healthy (default) or starting (never healthy)
rem   FAKE_DOCKER_COMPOSE  v2 (default): `docker compose` works; v1: it does not (docker-compose.bat)
rem   FAKE_DOCKER_FAIL     a compose subcommand (up) that fails, with exit 17
>>"%FAKE_LOG%" echo docker %*
if "%~1"=="inspect" goto inspect
if not "%~1"=="compose" exit /b 0
if /i "%FAKE_DOCKER_COMPOSE%"=="v1" exit /b 1
if "%~4"=="" exit /b 0
if "%~4"=="%FAKE_DOCKER_FAIL%" exit /b 17
exit /b 0

:inspect
if /i "%FAKE_DOCKER_MODE%"=="starting" (echo starting) else (echo healthy)
exit /b 0

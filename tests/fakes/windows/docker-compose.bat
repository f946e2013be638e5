@echo off
rem A stand-in for docker-compose.exe (Compose v1) in tests/test_scripts.py: records every call in FAKE_LOG.
>>"%FAKE_LOG%" echo docker-compose %*
if "%~3"=="" exit /b 0
if "%~3"=="%FAKE_DOCKER_FAIL%" exit /b 17
exit /b 0

@echo off
rem MongoDB alone in Docker, the app (VS Code) and the migrations on Windows: recreates the
rem mongodb-test container of docker-compose.test.yml (its data volume is kept), waits for it,
rem then asks whether to run the migrations (scripts\run-migrations.bat).
rem   scripts\rebuild-docker-dbonly.bat
rem MONGO_READY_TIMEOUT bounds the wait, in seconds (60). Exit code: the runner's when it runs;
rem 2 when Docker is missing or not running, 5 when MongoDB does not get ready, or that of the
rem failing docker command.
setlocal
for %%I in ("%~dp0..") do set "REPO=%%~fI"
set "COMPOSE_YML=%REPO%\docker-compose.test.yml"
if not defined MONGO_READY_TIMEOUT set "MONGO_READY_TIMEOUT=60"

call docker --version >nul 2>&1
if errorlevel 1 goto no_docker
call docker info >nul 2>&1
if errorlevel 1 goto no_engine
set "COMPOSE=docker compose"
call docker compose version >nul 2>&1
if not errorlevel 1 goto recreate
set "COMPOSE=docker-compose"
call docker-compose version >nul 2>&1
if errorlevel 1 goto no_compose

:recreate
echo ==^> recreating mongodb-test
call %COMPOSE% -f "%COMPOSE_YML%" up -d --force-recreate mongodb-test
if errorlevel 1 exit /b %ERRORLEVEL%

echo waiting for mongodb-test to be healthy (up to %MONGO_READY_TIMEOUT% s) ...
set /a WAITED=0
:wait
set "HEALTH=no such container"
for /f "delims=" %%S in ('docker inspect -f "{{.State.Health.Status}}" mongodb-test 2^>nul') do set "HEALTH=%%S"
if "%HEALTH%"=="healthy" goto ready
if %WAITED% geq %MONGO_READY_TIMEOUT% goto not_ready
rem One second: ping, not timeout, which refuses to run when stdin is redirected.
ping -n 2 127.0.0.1 >nul
set /a WAITED+=1
goto wait

:ready
echo MongoDB is ready on localhost:27020 (database flowise_proxy_test, the settings of .env.test)
set "ANSWER="
set /p "ANSWER=Run migrations now? (yes/no) "
if /i "%ANSWER%"=="yes" goto migrate
if /i "%ANSWER%"=="y" goto migrate
echo not running the migrations: run scripts\run-migrations.bat when you are ready
exit /b 0

:migrate
call "%~dp0run-migrations.bat"
exit /b %ERRORLEVEL%

:not_ready
echo error: MongoDB not ready after %MONGO_READY_TIMEOUT% s (mongodb-test: %HEALTH%). See why: docker logs mongodb-test 1>&2
exit /b 5

:no_docker
echo error: docker not found: install Docker Desktop (https://docs.docker.com/desktop/) 1>&2
exit /b 2

:no_engine
echo error: the Docker engine does not answer (docker info failed): start Docker Desktop and try again 1>&2
exit /b 2

:no_compose
echo error: Docker Compose not found: update Docker Desktop (docker compose) or install docker-compose 1>&2
exit /b 2

// Korean/English labels. Korean is the default; the choice is kept in localStorage.
const LABELS = {
  ko: {
    title: "citytwin 관제 대시보드",
    language: "English",
    property: "측정 항목",
    level: "행정구역",
    gu: "구",
    dong: "동",
    pm25: "초미세먼지 (PM2.5)",
    noise: "소음",
    air_temperature: "기온",
    sensors: "센서 (최신값)",
    districts: "행정구역 평균",
    buildings: "건물 (3D)",
    noData: "자료 없음",
    approvals: "승인 대기 작업",
    alerts: "최근 경보",
    approve: "승인",
    reject: "거부",
    token: "접근 토큰",
    saveToken: "저장",
    tokenSaved: "토큰이 이 세션에 저장되었습니다",
    reasonPrompt: "사유를 입력하세요",
    controlOff: "제어 기능이 설정되지 않았습니다 (CITYTWIN_CONTROL_FILE)",
    noTasks: "대기 중인 작업이 없습니다",
    noAlerts: "경보가 없습니다",
    loadFailed: "불러오기 실패",
    done: "처리됨",
    mapTab: "지도",
    linkageTab: "연계테이블",
    distribution: "분포도",
    off: "끄기",
    kriging: "크리깅 추정값",
    krigingSd: "크리깅 표준편차 (불확실성)",
    replay: "재생",
    live: "실시간",
    scenario: "시나리오",
    release: "화학물질 누출 (지점 클릭)",
    clickToRelease: "지도에서 누출 지점을 클릭하세요",
    running: "계산 중…",
    wind: "바람",
    stability: "안정도",
    exposed: "AEGL-1 구역 건물",
    residents: "추정 거주자",
    last24h: "최근 24시간 관측값",
  },
  en: {
    title: "citytwin operator dashboard",
    language: "한국어",
    property: "Property",
    level: "District level",
    gu: "Gu",
    dong: "Dong",
    pm25: "Fine dust (PM2.5)",
    noise: "Noise",
    air_temperature: "Air temperature",
    sensors: "Sensors (latest value)",
    districts: "District mean",
    buildings: "Buildings (3D)",
    noData: "no data",
    approvals: "Tasks awaiting approval",
    alerts: "Latest alerts",
    approve: "Approve",
    reject: "Reject",
    token: "Access token",
    saveToken: "Save",
    tokenSaved: "Token kept for this session",
    reasonPrompt: "Reason",
    controlOff: "Control is not configured (CITYTWIN_CONTROL_FILE)",
    noTasks: "No tasks waiting",
    noAlerts: "No alerts",
    loadFailed: "Could not load",
    done: "Done",
    mapTab: "Map",
    linkageTab: "Linkage table",
    distribution: "Distribution",
    off: "Off",
    kriging: "Kriging estimate",
    krigingSd: "Kriging standard deviation (uncertainty)",
    replay: "Replay",
    live: "Live",
    scenario: "Scenario",
    release: "Chemical release (click a point)",
    clickToRelease: "Click the release point on the map",
    running: "Running…",
    wind: "wind",
    stability: "stability class",
    exposed: "buildings in AEGL-1",
    residents: "estimated residents",
    last24h: "observations in the last 24 h",
  },
};

let language = localStorage.getItem("citytwin.language") === "en" ? "en" : "ko";

export function t(key) {
  return LABELS[language][key] ?? key;
}

export function currentLanguage() {
  return language;
}

export function setLanguage(next) {
  language = next in LABELS ? next : "ko";
  localStorage.setItem("citytwin.language", language);
  document.documentElement.lang = language;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
}
